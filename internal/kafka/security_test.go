package kafka

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/bendstream/bend/internal/kafkatest"
	"github.com/twmb/franz-go/pkg/kfake"
)

// testPKI is a throwaway CA with a broker and a client certificate, as PEM
// files for Config and as a server tls.Config for kfake.
type testPKI struct {
	caFile, certFile, keyFile string      // the CA, and the client certificate and key
	otherCAFile               string      // a CA that signed nothing here
	server                    *tls.Config // the broker's certificate; client certificates are verified against the CA
}

func newTestPKI(t *testing.T) testPKI {
	t.Helper()
	dir := t.TempDir()
	ca, caKey, caPEM, _ := issue(t, &x509.Certificate{
		Subject: pkix.Name{CommonName: "bend test CA"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign,
	}, nil, nil)
	_, _, otherPEM, _ := issue(t, &x509.Certificate{
		Subject: pkix.Name{CommonName: "another CA"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign,
	}, nil, nil)
	_, _, brokerPEM, brokerKeyPEM := issue(t, &x509.Certificate{
		Subject: pkix.Name{CommonName: "localhost"}, DNSNames: []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, ca, caKey)
	_, _, clientPEM, clientKeyPEM := issue(t, &x509.Certificate{
		Subject:  pkix.Name{CommonName: "bend-test-client"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, ca, caKey)
	brokerCert, err := tls.X509KeyPair(brokerPEM, brokerKeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return testPKI{
		caFile:      writeTemp(t, dir, "ca.pem", caPEM),
		certFile:    writeTemp(t, dir, "client.pem", clientPEM),
		keyFile:     writeTemp(t, dir, "client.key", clientKeyPEM),
		otherCAFile: writeTemp(t, dir, "other-ca.pem", otherPEM),
		server:      &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{brokerCert}, ClientCAs: pool},
	}
}

// issue makes a certificate from tmpl signed by parent (self-signed when
// parent is nil) and returns it with its key, both also as PEM.
func issue(t *testing.T, tmpl, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey, []byte, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber = serial
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	tmpl.NotAfter = time.Now().Add(24 * time.Hour)
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
}

func writeTemp(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// realConfig returns the defaults pointed at brokers, with secure changes applied.
func realConfig(brokers []string, secure func(*Config)) Config {
	c := DefaultConfig()
	c.Brokers = brokers
	if secure != nil {
		secure(&c)
	}
	return c
}

func TestValidateSecurity(t *testing.T) {
	const pw = "hunter2-s3cret"
	pki := newTestPKI(t)
	dir := t.TempDir()
	pwFile := writeTemp(t, dir, "password", []byte(pw+"\n"))
	emptyFile := writeTemp(t, dir, "empty", []byte("\n"))
	notPEM := writeTemp(t, dir, "not.pem", []byte("hello"))
	missing := filepath.Join(dir, "missing")
	scram := func(c *Config) { c.SASL = SASL{Mechanism: MechanismSCRAMSHA512, Username: "bend", Password: pw} }
	for _, tc := range []struct {
		name     string
		embedded bool // leave kafka.brokers empty
		set      func(*Config)
		wantErr  []string // keys the error must name; none: valid
	}{
		{name: "defaults", embedded: true, set: nil},
		{name: "real cluster, no security", set: nil},
		{name: "tls with system roots", set: func(c *Config) { c.TLS.Enabled = true }},
		{name: "tls with ca", set: func(c *Config) { c.TLS = TLS{Enabled: true, CAFile: pki.caFile, ServerName: "localhost"} }},
		{name: "mtls", set: func(c *Config) {
			c.TLS = TLS{Enabled: true, CAFile: pki.caFile, CertFile: pki.certFile, KeyFile: pki.keyFile}
		}},
		{name: "insecure", set: func(c *Config) { c.TLS = TLS{Enabled: true, InsecureSkipVerify: true} }},
		{name: "missing ca file", set: func(c *Config) { c.TLS = TLS{Enabled: true, CAFile: missing} },
			wantErr: []string{"kafka.tls.ca_file"}},
		{name: "ca file is not pem", set: func(c *Config) { c.TLS = TLS{Enabled: true, CAFile: notPEM} },
			wantErr: []string{"kafka.tls.ca_file"}},
		{name: "cert without key", set: func(c *Config) { c.TLS = TLS{Enabled: true, CertFile: pki.certFile} },
			wantErr: []string{"kafka.tls.key_file"}},
		{name: "key without cert", set: func(c *Config) { c.TLS = TLS{Enabled: true, KeyFile: pki.keyFile} },
			wantErr: []string{"kafka.tls.cert_file"}},
		{name: "missing cert and key files", set: func(c *Config) {
			c.TLS = TLS{Enabled: true, CertFile: missing, KeyFile: missing + ".key"}
		}, wantErr: []string{"kafka.tls.cert_file", "kafka.tls.key_file"}},
		{name: "cert and key do not match", set: func(c *Config) {
			c.TLS = TLS{Enabled: true, CertFile: pki.caFile, KeyFile: pki.keyFile}
		}, wantErr: []string{"kafka.tls.cert_file"}},
		{name: "insecure with ca", set: func(c *Config) { c.TLS = TLS{Enabled: true, CAFile: pki.caFile, InsecureSkipVerify: true} },
			wantErr: []string{"kafka.tls.insecure_skip_verify"}},
		{name: "tls files while tls is off", set: func(c *Config) { c.TLS = TLS{CAFile: pki.caFile, ServerName: "x"} },
			wantErr: []string{"kafka.tls.ca_file", "kafka.tls.server_name"}},
		{name: "tls with the embedded broker", embedded: true, set: func(c *Config) { c.TLS.Enabled = true },
			wantErr: []string{"kafka.tls.enabled"}},
		{name: "scram-sha-512", set: scram},
		{name: "scram-sha-256 from a password file", set: func(c *Config) {
			c.SASL = SASL{Mechanism: MechanismSCRAMSHA256, Username: "bend", PasswordFile: pwFile}
		}},
		{name: "plain over tls", set: func(c *Config) {
			c.TLS.Enabled = true
			c.SASL = SASL{Mechanism: MechanismPlain, Username: "bend", Password: pw}
		}},
		{name: "bad mechanism", set: func(c *Config) { scram(c); c.SASL.Mechanism = "GSSAPI" },
			wantErr: []string{"kafka.sasl.mechanism"}},
		{name: "mechanism in lower case", set: func(c *Config) { scram(c); c.SASL.Mechanism = "scram-sha-512" },
			wantErr: []string{"kafka.sasl.mechanism"}},
		{name: "no username", set: func(c *Config) { scram(c); c.SASL.Username = "" },
			wantErr: []string{"kafka.sasl.username"}},
		{name: "no password", set: func(c *Config) { scram(c); c.SASL.Password = "" },
			wantErr: []string{"kafka.sasl.password"}},
		{name: "password and password_file both set", set: func(c *Config) { scram(c); c.SASL.PasswordFile = pwFile },
			wantErr: []string{"kafka.sasl.password_file"}},
		{name: "missing password file", set: func(c *Config) { scram(c); c.SASL.Password = ""; c.SASL.PasswordFile = missing },
			wantErr: []string{"kafka.sasl.password_file"}},
		{name: "empty password file", set: func(c *Config) { scram(c); c.SASL.Password = ""; c.SASL.PasswordFile = emptyFile },
			wantErr: []string{"kafka.sasl.password_file"}},
		{name: "credentials while sasl is off", set: func(c *Config) { scram(c); c.SASL.Mechanism = "" },
			wantErr: []string{"kafka.sasl.username", "kafka.sasl.password"}},
		{name: "sasl with the embedded broker", embedded: true, set: scram,
			wantErr: []string{"kafka.sasl.mechanism"}},
		{name: "every error at once", set: func(c *Config) {
			c.TLS = TLS{Enabled: true, CAFile: missing, CertFile: pki.certFile}
			c.SASL = SASL{Mechanism: "SCRAM", Password: pw, PasswordFile: pwFile}
		}, wantErr: []string{"kafka.tls.ca_file", "kafka.tls.key_file", "kafka.sasl.mechanism", "kafka.sasl.username", "kafka.sasl.password_file"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := realConfig([]string{"127.0.0.1:9092"}, tc.set)
			if tc.embedded {
				c.Brokers = nil
			}
			err := c.Validate()
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				if _, err := c.Sarama(nil); err != nil {
					t.Fatalf("Sarama() = %v, want nil after Validate passed", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want errors naming %q", tc.wantErr)
			}
			for _, key := range tc.wantErr {
				if !strings.Contains(err.Error(), key) {
					t.Errorf("Validate() = %q, want it to name %s", err, key)
				}
			}
			if strings.Contains(err.Error(), pw) {
				t.Errorf("Validate() = %q: it contains the password", err)
			}
		})
	}
}

func TestSaramaAppliesSecurity(t *testing.T) {
	pki := newTestPKI(t)
	pwFile := writeTemp(t, t.TempDir(), "password", []byte("from-file\r\n"))
	t.Run("off", func(t *testing.T) {
		sc, err := realConfig([]string{"b:9092"}, nil).Sarama(nil)
		if err != nil {
			t.Fatal(err)
		}
		if sc.Net.TLS.Enable || sc.Net.SASL.Enable {
			t.Errorf("Net.TLS.Enable = %v, Net.SASL.Enable = %v, want both false", sc.Net.TLS.Enable, sc.Net.SASL.Enable)
		}
	})
	t.Run("tls", func(t *testing.T) {
		sc, err := realConfig([]string{"b:9092"}, func(c *Config) {
			c.TLS = TLS{Enabled: true, CAFile: pki.caFile, CertFile: pki.certFile, KeyFile: pki.keyFile, ServerName: "kafka.internal"}
		}).Sarama(nil)
		if err != nil {
			t.Fatal(err)
		}
		tc := sc.Net.TLS.Config
		if !sc.Net.TLS.Enable || tc == nil {
			t.Fatalf("Net.TLS = %+v, want enabled with a config", sc.Net.TLS)
		}
		if tc.RootCAs == nil || len(tc.Certificates) != 1 || tc.ServerName != "kafka.internal" || tc.InsecureSkipVerify {
			t.Errorf("tls.Config: RootCAs set %v, %d certificates, ServerName %q, InsecureSkipVerify %v; want set, 1, kafka.internal, false",
				tc.RootCAs != nil, len(tc.Certificates), tc.ServerName, tc.InsecureSkipVerify)
		}
		if tc.MinVersion != tls.VersionTLS12 {
			t.Errorf("MinVersion = %x, want TLS 1.2", tc.MinVersion)
		}
	})
	for _, tc := range []struct {
		mech  string
		want  sarama.SASLMechanism
		scram bool
	}{
		{MechanismPlain, sarama.SASLTypePlaintext, false},
		{MechanismSCRAMSHA256, sarama.SASLTypeSCRAMSHA256, true},
		{MechanismSCRAMSHA512, sarama.SASLTypeSCRAMSHA512, true},
	} {
		t.Run(tc.mech, func(t *testing.T) {
			sc, err := realConfig([]string{"b:9092"}, func(c *Config) {
				c.SASL = SASL{Mechanism: tc.mech, Username: "bend", PasswordFile: pwFile}
			}).Sarama(nil)
			if err != nil {
				t.Fatal(err)
			}
			s := sc.Net.SASL
			if !s.Enable || !s.Handshake || s.Mechanism != tc.want || s.User != "bend" || s.Password != "from-file" {
				t.Errorf("Net.SASL: Enable %v, Handshake %v, Mechanism %s, User %q, password from file %v; want true, true, %s, bend, true",
					s.Enable, s.Handshake, s.Mechanism, s.User, s.Password == "from-file", tc.want)
			}
			if (s.SCRAMClientGeneratorFunc != nil) != tc.scram {
				t.Fatalf("SCRAMClientGeneratorFunc set = %v, want %v", s.SCRAMClientGeneratorFunc != nil, tc.scram)
			}
			if err := sc.Validate(); err != nil {
				t.Errorf("sarama Validate() = %v", err)
			}
			if !tc.scram {
				return
			}
			c := s.SCRAMClientGeneratorFunc()
			if err := c.Begin("bend", "from-file", ""); err != nil {
				t.Fatal(err)
			}
			first, err := c.Step("")
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(first, "n,,n=bend,r=") || c.Done() {
				t.Errorf("first message %q, Done %v; want n,,n=bend,r=..., false", first, c.Done())
			}
		})
	}
}

func TestSecretIsNeverPrinted(t *testing.T) {
	const pw = "hunter2-s3cret"
	c := realConfig([]string{"b:9092"}, func(c *Config) {
		c.SASL = SASL{Mechanism: MechanismSCRAMSHA512, Username: "bend", Password: pw}
	})
	js, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, out := range []string{
		fmt.Sprintf("%v", c), fmt.Sprintf("%+v", c), fmt.Sprintf("%#v", c), fmt.Sprintf("%+v", &c),
		fmt.Sprintf("%s", c.SASL.Password), fmt.Sprintf("%q", c.SASL.Password), fmt.Sprintf("%x", c.SASL.Password),
		fmt.Sprint(c.SASL.Password), fmt.Sprintf("%#v", c.SASL), string(js),
	} {
		if strings.Contains(out, pw) || strings.Contains(out, fmt.Sprintf("%x", pw)) {
			t.Errorf("printed config contains the password: %s", out)
		}
		if !strings.Contains(out, redacted) {
			t.Errorf("printed config does not show %s: %s", redacted, out)
		}
	}
	if got := fmt.Sprintf("%+v", Secret("")); got != "" {
		t.Errorf("empty Secret prints %q, want \"\"", got)
	}
	if string(c.SASL.Password) != pw {
		t.Errorf("string(Secret) = %q, want the value", string(c.SASL.Password))
	}
}

// roundTrip creates a topic, produces records and consumes them back with
// the client configuration cfg builds, and checks the connection: over TLS
// it must be encrypted and (unless insecure) verified against the CA.
func roundTrip(t *testing.T, brokers []string, cfg Config) {
	t.Helper()
	sc, err := cfg.Sarama(nil)
	if err != nil {
		t.Fatalf("Sarama(): %v", err)
	}
	checkConnection(t, brokers[0], sc, cfg.TLS)
	topic := kafkatest.Name(t, "topic")
	if err := EnsureTopics(brokers, sc, Topics{Partitions: 1, ReplicationFactor: 1}, topic); err != nil {
		t.Fatalf("EnsureTopics: %v", err)
	}
	sc.Producer.Return.Successes = true
	p, err := sarama.NewSyncProducer(brokers, sc)
	if err != nil {
		t.Fatalf("producer: %v", err)
	}
	defer func() {
		if err := p.Close(); err != nil {
			t.Errorf("closing producer: %v", err)
		}
	}()
	const n = 5
	for i := range n {
		if _, _, err := p.SendMessage(&sarama.ProducerMessage{Topic: topic, Value: sarama.StringEncoder(fmt.Sprintf("r%d", i))}); err != nil {
			t.Fatalf("producing record %d: %v", i, err)
		}
	}
	c, err := sarama.NewConsumer(brokers, sc)
	if err != nil {
		t.Fatalf("consumer: %v", err)
	}
	defer c.Close()
	pc, err := c.ConsumePartition(topic, 0, sarama.OffsetOldest)
	if err != nil {
		t.Fatalf("consume %s/0: %v", topic, err)
	}
	defer pc.AsyncClose()
	timeout := time.After(30 * time.Second)
	for i := range n {
		select {
		case m := <-pc.Messages():
			if got, want := string(m.Value), fmt.Sprintf("r%d", i); got != want {
				t.Fatalf("record %d = %q, want %q", i, got, want)
			}
		case err := <-pc.Errors():
			t.Fatalf("consuming: %v", err)
		case <-timeout:
			t.Fatalf("read %d of %d records within 30s", i, n)
		}
	}
}

// checkConnection opens one connection to addr with sc and checks its TLS state against want.
func checkConnection(t *testing.T, addr string, sc *sarama.Config, want TLS) {
	t.Helper()
	b := sarama.NewBroker(addr)
	if err := b.Open(sc); err != nil {
		t.Fatalf("opening %s: %v", addr, err)
	}
	defer b.Close()
	if _, err := b.GetMetadata(&sarama.MetadataRequest{Version: 4}); err != nil {
		t.Fatalf("metadata from %s: %v", addr, err)
	}
	state, isTLS := b.TLSConnectionState()
	if isTLS != want.Enabled {
		t.Fatalf("connection to %s: TLS %v, want %v", addr, isTLS, want.Enabled)
	}
	if !isTLS {
		return
	}
	if !state.HandshakeComplete {
		t.Fatalf("connection to %s: TLS handshake not complete", addr)
	}
	if !want.InsecureSkipVerify && len(state.VerifiedChains) == 0 {
		t.Errorf("connection to %s: the broker certificate was not verified", addr)
	}
}

// connectErr returns the error sarama.NewClient reports for cfg at brokers,
// without retrying, or nil if it connected.
func connectErr(t *testing.T, brokers []string, cfg Config) error {
	t.Helper()
	sc, err := cfg.Sarama(nil)
	if err != nil {
		t.Fatalf("Sarama(): %v", err)
	}
	sc.Metadata.Retry.Max = 0
	sc.Net.DialTimeout = 5 * time.Second
	sc.Net.ReadTimeout = 5 * time.Second
	c, err := sarama.NewClient(brokers, sc)
	if err != nil {
		return err
	}
	if _, err := c.Controller(); err != nil { // a request on a connection of its own
		_ = c.Close()
		return err
	}
	return c.Close()
}

// wantAuthFailed checks that err is the broker's SASL authentication
// failure and does not carry the password.
func wantAuthFailed(t *testing.T, err error, password string) {
	t.Helper()
	switch {
	case err == nil:
		t.Fatal("connected with a wrong password")
	case !errors.Is(err, sarama.ErrSASLAuthenticationFailed):
		t.Fatalf("error %q (%T), want sarama.ErrSASLAuthenticationFailed", err, err)
	case strings.Contains(err.Error(), password):
		t.Fatalf("error %q contains the password", err)
	}
	t.Logf("wrong password: %v", err)
}

// wantUnknownAuthority checks that err is a certificate verification failure.
func wantUnknownAuthority(t *testing.T, err error) {
	t.Helper()
	var ua x509.UnknownAuthorityError
	switch {
	case err == nil:
		t.Fatal("connected although the broker certificate is not signed by the configured CA")
	case !errors.As(err, &ua):
		t.Fatalf("error %q (%T), want x509.UnknownAuthorityError", err, err)
	}
	t.Logf("wrong CA: %v", err)
}

// startKfake starts an embedded broker with opts and returns its address.
func startKfake(t *testing.T, opts ...kfake.Opt) []string {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1), kfake.AllowAutoTopicCreation()}, opts...)...)
	if err != nil {
		t.Fatalf("starting kfake: %v", err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()
}

// TestSecurityEmbedded runs the client side of TLS, mTLS and SASL against
// the embedded broker (kfake), so `go test ./...` covers it anywhere;
// TestSecurityRealKafka does the same against Apache Kafka.
func TestSecurityEmbedded(t *testing.T) {
	const user, pw = "bend", "embedded-s3cret"
	pki := newTestPKI(t)
	tlsOn := TLS{Enabled: true, CAFile: pki.caFile}
	mtlsServer := pki.server.Clone()
	mtlsServer.ClientAuth = tls.RequireAndVerifyClientCert
	users := []kfake.Opt{
		kfake.EnableSASL(),
		kfake.Superuser(MechanismSCRAMSHA512, user, pw),
		kfake.Superuser(MechanismSCRAMSHA256, user, pw),
		kfake.Superuser(MechanismPlain, user, pw),
	}
	tlsBroker := startKfake(t, kfake.TLS(pki.server))
	mtlsBroker := startKfake(t, kfake.TLS(mtlsServer))
	saslBroker := startKfake(t, users...)
	tlsSASLBroker := startKfake(t, append(users, kfake.TLS(pki.server))...)

	t.Run("tls", func(t *testing.T) {
		roundTrip(t, tlsBroker, realConfig(tlsBroker, func(c *Config) { c.TLS = tlsOn }))
	})
	t.Run("tls server name", func(t *testing.T) {
		roundTrip(t, tlsBroker, realConfig(tlsBroker, func(c *Config) { c.TLS = tlsOn; c.TLS.ServerName = "localhost" }))
	})
	t.Run("mtls", func(t *testing.T) {
		roundTrip(t, mtlsBroker, realConfig(mtlsBroker, func(c *Config) {
			c.TLS = TLS{Enabled: true, CAFile: pki.caFile, CertFile: pki.certFile, KeyFile: pki.keyFile}
		}))
	})
	t.Run("mtls without a client certificate", func(t *testing.T) {
		if err := connectErr(t, mtlsBroker, realConfig(mtlsBroker, func(c *Config) { c.TLS = tlsOn })); err == nil {
			t.Fatal("connected without a client certificate to a broker that requires one")
		}
	})
	t.Run("tls wrong ca", func(t *testing.T) {
		wantUnknownAuthority(t, connectErr(t, tlsBroker, realConfig(tlsBroker, func(c *Config) {
			c.TLS = TLS{Enabled: true, CAFile: pki.otherCAFile}
		})))
	})
	t.Run("tls wrong server name", func(t *testing.T) {
		err := connectErr(t, tlsBroker, realConfig(tlsBroker, func(c *Config) { c.TLS = tlsOn; c.TLS.ServerName = "kafka.example" }))
		var he x509.HostnameError
		if !errors.As(err, &he) {
			t.Fatalf("error %v, want x509.HostnameError", err)
		}
	})
	for _, mech := range []string{MechanismSCRAMSHA512, MechanismSCRAMSHA256, MechanismPlain} {
		t.Run(mech, func(t *testing.T) {
			roundTrip(t, saslBroker, realConfig(saslBroker, func(c *Config) {
				c.SASL = SASL{Mechanism: mech, Username: user, Password: Secret(pw)}
			}))
		})
		t.Run(mech+" wrong password", func(t *testing.T) {
			// kfake drops the connection instead of answering with
			// SASL_AUTHENTICATION_FAILED as Kafka does (see TestSecurityRealKafka).
			err := connectErr(t, saslBroker, realConfig(saslBroker, func(c *Config) {
				c.SASL = SASL{Mechanism: mech, Username: user, Password: "not-" + pw}
			}))
			if err == nil {
				t.Fatal("connected with a wrong password")
			}
			if strings.Contains(err.Error(), pw) {
				t.Fatalf("error %q contains the password", err)
			}
		})
	}
	t.Run("tls+SCRAM-SHA-512", func(t *testing.T) {
		roundTrip(t, tlsSASLBroker, realConfig(tlsSASLBroker, func(c *Config) {
			c.TLS = tlsOn
			c.SASL = SASL{Mechanism: MechanismSCRAMSHA512, Username: user, Password: Secret(pw)}
		}))
	})
	t.Run("no credentials", func(t *testing.T) {
		if err := connectErr(t, saslBroker, realConfig(saslBroker, nil)); err == nil {
			t.Fatal("connected without SASL to a broker that requires it")
		}
	})
}
