package kafka

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/IBM/sarama"
	"github.com/xdg-go/scram"
)

// TLS is the "kafka.tls" section of config.yaml: how bend encrypts its
// connections to the brokers and verifies them.
type TLS struct {
	// Enabled turns TLS on for every broker connection. Default false.
	Enabled bool `mapstructure:"enabled"`
	// CAFile is a PEM file of the CA certificates that sign the brokers'
	// certificates. Empty uses the system's roots. Default empty.
	CAFile string `mapstructure:"ca_file"`
	// CertFile and KeyFile are a PEM client certificate and its unencrypted
	// key, for brokers that require mutual TLS (ssl.client.auth=required).
	// Both or neither. Default empty (no client certificate).
	CertFile string `mapstructure:"cert_file"`
	KeyFile  string `mapstructure:"key_file"` // see CertFile
	// ServerName is the name the brokers' certificates must carry. Empty
	// uses the host of each broker address (an IP address is checked
	// against the certificate's IP SANs). Default empty.
	ServerName string `mapstructure:"server_name"`
	// InsecureSkipVerify accepts any broker certificate: the connection is
	// encrypted but not authenticated. For tests only; it conflicts with
	// CAFile. Default false.
	InsecureSkipVerify bool `mapstructure:"insecure_skip_verify"`
}

// The SASL mechanisms bend supports, as config.yaml spells them.
const (
	MechanismPlain       = "PLAIN"
	MechanismSCRAMSHA256 = "SCRAM-SHA-256"
	MechanismSCRAMSHA512 = "SCRAM-SHA-512"
)

// SASL is the "kafka.sasl" section of config.yaml: how bend authenticates
// to the brokers.
type SASL struct {
	// Mechanism is empty (no SASL), PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
	// PLAIN sends the password as it is: use it only with tls.enabled.
	// Default empty.
	Mechanism string `mapstructure:"mechanism"`
	// Username is the SASL user. Required with a mechanism. Default empty.
	Username string `mapstructure:"username"`
	// Password is the SASL password. Prefer the environment
	// (BEND_KAFKA_SASL_PASSWORD) or PasswordFile to writing it in
	// config.yaml. It never appears in bend's output (see Secret).
	// Default empty.
	Password Secret `mapstructure:"password"`
	// PasswordFile names a file holding the password (trailing line breaks
	// are dropped). It is read when the sarama config is built, so a
	// changed file takes effect at the next start or reload. Set
	// Password or PasswordFile, not both. Default empty.
	PasswordFile string `mapstructure:"password_file"`
}

// Secret is a string that does not print: fmt's verbs, %+v and %#v of any
// struct holding it, JSON, YAML and text encoders all show "[redacted]"
// (or "" when it is empty, so a missing secret stays visible). Convert it
// with string(s) where the value is really needed.
type Secret string

const redacted = "[redacted]"

// String returns "[redacted]", or "" for an empty secret.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return redacted
}

// GoString implements fmt.GoStringer for %#v: kafka.Secret("[redacted]").
func (s Secret) GoString() string { return fmt.Sprintf("kafka.Secret(%q)", s.String()) }

// Format implements fmt.Formatter, so no verb (%s, %q, %x, %v, ...) prints the value.
func (s Secret) Format(f fmt.State, verb rune) {
	switch verb {
	case 'v':
		if f.Flag('#') {
			_, _ = io.WriteString(f, s.GoString())
			return
		}
		_, _ = io.WriteString(f, s.String())
	case 'q':
		_, _ = fmt.Fprintf(f, "%q", s.String())
	default:
		_, _ = io.WriteString(f, s.String())
	}
}

// MarshalText implements encoding.TextMarshaler for JSON, YAML and
// structured log fields.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// validate reports every invalid "kafka.tls" key.
func (t TLS) validate() error {
	if !t.Enabled {
		var errs []error
		for _, f := range []struct{ key, v string }{
			{"ca_file", t.CAFile}, {"cert_file", t.CertFile}, {"key_file", t.KeyFile}, {"server_name", t.ServerName},
		} {
			if f.v != "" {
				errs = append(errs, fmt.Errorf("kafka.tls.%s: set, but kafka.tls.enabled is false", f.key))
			}
		}
		if t.InsecureSkipVerify {
			errs = append(errs, errors.New("kafka.tls.insecure_skip_verify: set, but kafka.tls.enabled is false"))
		}
		return errors.Join(errs...)
	}
	_, err := t.config()
	return err
}

// config builds the client TLS configuration, reading and parsing the
// files; errors name the key.
func (t TLS) config() (*tls.Config, error) {
	var errs []error
	tc := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         t.ServerName,
		InsecureSkipVerify: t.InsecureSkipVerify, // opt-in, documented as for tests only
	}
	if t.InsecureSkipVerify && t.CAFile != "" {
		errs = append(errs, errors.New("kafka.tls.insecure_skip_verify: conflicts with kafka.tls.ca_file (the CA would not be checked)"))
	}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			errs = append(errs, fmt.Errorf("kafka.tls.ca_file: %w", err))
		} else {
			tc.RootCAs = x509.NewCertPool()
			if !tc.RootCAs.AppendCertsFromPEM(pem) {
				errs = append(errs, fmt.Errorf("kafka.tls.ca_file: no PEM certificate in %s", t.CAFile))
			}
		}
	}
	switch {
	case t.CertFile == "" && t.KeyFile == "":
	case t.CertFile == "":
		errs = append(errs, errors.New("kafka.tls.cert_file: required with kafka.tls.key_file"))
	case t.KeyFile == "":
		errs = append(errs, errors.New("kafka.tls.key_file: required with kafka.tls.cert_file"))
	default:
		for _, f := range []struct{ key, path string }{{"cert_file", t.CertFile}, {"key_file", t.KeyFile}} {
			if _, err := os.Stat(f.path); err != nil {
				errs = append(errs, fmt.Errorf("kafka.tls.%s: %w", f.key, err))
			}
		}
		if len(errs) > 0 {
			break
		}
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			errs = append(errs, fmt.Errorf("kafka.tls.cert_file, kafka.tls.key_file: %w", err))
		} else {
			tc.Certificates = []tls.Certificate{cert}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return tc, nil
}

// validate reports every invalid "kafka.sasl" key.
func (s SASL) validate() error {
	var errs []error
	switch s.Mechanism {
	case "":
		if s.Username != "" {
			errs = append(errs, errors.New("kafka.sasl.username: set, but kafka.sasl.mechanism is empty (SASL is off)"))
		}
		if s.Password != "" {
			errs = append(errs, errors.New("kafka.sasl.password: set, but kafka.sasl.mechanism is empty (SASL is off)"))
		}
		if s.PasswordFile != "" {
			errs = append(errs, errors.New("kafka.sasl.password_file: set, but kafka.sasl.mechanism is empty (SASL is off)"))
		}
		return errors.Join(errs...)
	case MechanismPlain, MechanismSCRAMSHA256, MechanismSCRAMSHA512:
	default:
		errs = append(errs, fmt.Errorf("kafka.sasl.mechanism: want %s, %s or %s (or empty), got %q",
			MechanismPlain, MechanismSCRAMSHA256, MechanismSCRAMSHA512, s.Mechanism))
	}
	if s.Username == "" {
		errs = append(errs, errors.New("kafka.sasl.username: required with kafka.sasl.mechanism"))
	}
	if _, err := s.password(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// password returns the password from Password or PasswordFile. Its errors
// name the key and never contain the password.
func (s SASL) password() (string, error) {
	switch {
	case s.Password != "" && s.PasswordFile != "":
		return "", errors.New("kafka.sasl.password_file: set together with kafka.sasl.password; set one")
	case s.Password != "":
		return string(s.Password), nil
	case s.PasswordFile != "":
		b, err := os.ReadFile(s.PasswordFile)
		if err != nil {
			return "", fmt.Errorf("kafka.sasl.password_file: %w", err)
		}
		p := strings.TrimRight(string(b), "\r\n")
		if p == "" {
			return "", fmt.Errorf("kafka.sasl.password_file: %s is empty", s.PasswordFile)
		}
		return p, nil
	default:
		return "", errors.New("kafka.sasl.password: required with kafka.sasl.mechanism (or kafka.sasl.password_file, or BEND_KAFKA_SASL_PASSWORD)")
	}
}

// applySecurity sets sarama's Net.TLS and Net.SASL from c.
func (c Config) applySecurity(sc *sarama.Config) error {
	if c.TLS.Enabled {
		tc, err := c.TLS.config()
		if err != nil {
			return err
		}
		sc.Net.TLS.Enable = true
		sc.Net.TLS.Config = tc
	}
	if c.SASL.Mechanism == "" {
		return nil
	}
	pw, err := c.SASL.password()
	if err != nil {
		return err
	}
	sc.Net.SASL.Enable = true
	sc.Net.SASL.Handshake = true
	sc.Net.SASL.User = c.SASL.Username
	sc.Net.SASL.Password = pw
	switch c.SASL.Mechanism {
	case MechanismPlain:
		sc.Net.SASL.Mechanism = sarama.SASLTypePlaintext
	case MechanismSCRAMSHA256:
		sc.Net.SASL.Mechanism = sarama.SASLTypeSCRAMSHA256
		sc.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient { return &scramClient{hash: scram.SHA256} }
	case MechanismSCRAMSHA512:
		sc.Net.SASL.Mechanism = sarama.SASLTypeSCRAMSHA512
		sc.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient { return &scramClient{hash: scram.SHA512} }
	default:
		return fmt.Errorf("kafka.sasl.mechanism: unsupported %q", c.SASL.Mechanism)
	}
	return nil
}

// scramClient adapts github.com/xdg-go/scram to sarama.SCRAMClient. sarama
// makes one per connection and calls Begin, then Step until Done. The
// conversation also checks the broker's final signature, so a broker that
// does not know the password cannot pass itself off as one.
type scramClient struct {
	hash scram.HashGeneratorFcn
	conv *scram.ClientConversation
}

// Begin starts a conversation for user; the password is SASLprepped.
func (s *scramClient) Begin(user, password, authzID string) error {
	c, err := s.hash.NewClient(user, password, authzID)
	if err != nil {
		return fmt.Errorf("scram: %w", err) // v1.3.0+ keeps the password out of this error
	}
	s.conv = c.NewConversation()
	return nil
}

// Step answers the broker's challenge ("" for the first message).
func (s *scramClient) Step(challenge string) (string, error) {
	if s.conv == nil {
		return "", errors.New("scram: Step before Begin")
	}
	return s.conv.Step(challenge)
}

// Done reports whether the broker's final message was verified.
func (s *scramClient) Done() bool { return s.conv != nil && s.conv.Done() }
