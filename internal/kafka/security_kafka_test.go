package kafka

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The secure listeners of a real broker, as `BEND_KAFKA_SECURITY=all
// scripts/kafka start` writes them to <state>/secure.env.
const (
	envTLSBrokers      = "BEND_TEST_TLS_BROKERS"       // SSL
	envMTLSBrokers     = "BEND_TEST_MTLS_BROKERS"      // SSL, client certificate required
	envSCRAMBrokers    = "BEND_TEST_SCRAM_BROKERS"     // SASL_PLAINTEXT
	envTLSSCRAMBrokers = "BEND_TEST_TLS_SCRAM_BROKERS" // SASL_SSL
	envCAFile          = "BEND_TEST_CA_FILE"
	envClientCert      = "BEND_TEST_CLIENT_CERT_FILE"
	envClientKey       = "BEND_TEST_CLIENT_KEY_FILE"
	envSCRAMUser       = "BEND_TEST_SCRAM_USER"
	envSCRAMPassword   = "BEND_TEST_SCRAM_PASSWORD"
)

// secureEnv returns the values of vars, or skips t naming the first one missing.
func secureEnv(t *testing.T, vars ...string) []string {
	t.Helper()
	vals := make([]string, len(vars))
	for i, v := range vars {
		vals[i] = os.Getenv(v)
		if vals[i] == "" {
			t.Skipf("needs a real Apache Kafka broker with secure listeners: %s is unset "+
				"(BEND_KAFKA_SECURITY=all scripts/kafka start, then source <state>/secure.env)", v)
		}
	}
	return vals
}

// TestSecurityRealKafka produces and consumes through Apache Kafka's TLS,
// mTLS, SASL_PLAINTEXT (SCRAM) and SASL_SSL (SCRAM over TLS) listeners with
// the client configuration Config.Sarama builds, and checks that a wrong
// password, a wrong CA and a missing client certificate are refused.
func TestSecurityRealKafka(t *testing.T) {
	if os.Getenv(envTLSBrokers)+os.Getenv(envMTLSBrokers)+os.Getenv(envSCRAMBrokers)+os.Getenv(envTLSSCRAMBrokers) == "" {
		t.Skipf("needs a real Apache Kafka broker with secure listeners: %s, %s, %s and %s are unset "+
			"(BEND_KAFKA_SECURITY=all scripts/kafka start, then source <state>/secure.env)",
			envTLSBrokers, envMTLSBrokers, envSCRAMBrokers, envTLSSCRAMBrokers)
	}
	t.Run("tls", func(t *testing.T) {
		env := secureEnv(t, envTLSBrokers, envCAFile)
		brokers := strings.Split(env[0], ",")
		roundTrip(t, brokers, realConfig(brokers, func(c *Config) { c.TLS = TLS{Enabled: true, CAFile: env[1]} }))
	})
	t.Run("tls wrong ca", func(t *testing.T) {
		env := secureEnv(t, envTLSBrokers)
		brokers := strings.Split(env[0], ",")
		pki := newTestPKI(t)
		wantUnknownAuthority(t, connectErr(t, brokers, realConfig(brokers, func(c *Config) {
			c.TLS = TLS{Enabled: true, CAFile: pki.caFile}
		})))
	})
	t.Run("mtls", func(t *testing.T) {
		env := secureEnv(t, envMTLSBrokers, envCAFile, envClientCert, envClientKey)
		brokers := strings.Split(env[0], ",")
		roundTrip(t, brokers, realConfig(brokers, func(c *Config) {
			c.TLS = TLS{Enabled: true, CAFile: env[1], CertFile: env[2], KeyFile: env[3]}
		}))
	})
	t.Run("mtls without a client certificate", func(t *testing.T) {
		env := secureEnv(t, envMTLSBrokers, envCAFile)
		brokers := strings.Split(env[0], ",")
		err := connectErr(t, brokers, realConfig(brokers, func(c *Config) { c.TLS = TLS{Enabled: true, CAFile: env[1]} }))
		if err == nil {
			t.Fatal("connected without a client certificate to a listener that requires one")
		}
		t.Logf("no client certificate: %v", err)
	})
	for _, mech := range []string{MechanismSCRAMSHA512, MechanismSCRAMSHA256} {
		t.Run(mech, func(t *testing.T) {
			env := secureEnv(t, envSCRAMBrokers, envSCRAMUser, envSCRAMPassword)
			brokers := strings.Split(env[0], ",")
			roundTrip(t, brokers, realConfig(brokers, func(c *Config) {
				c.SASL = SASL{Mechanism: mech, Username: env[1], Password: Secret(env[2])}
			}))
		})
	}
	t.Run("SCRAM-SHA-512 password file", func(t *testing.T) {
		env := secureEnv(t, envSCRAMBrokers, envSCRAMUser, envSCRAMPassword)
		brokers := strings.Split(env[0], ",")
		file := filepath.Join(t.TempDir(), "password")
		if err := os.WriteFile(file, []byte(env[2]+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		roundTrip(t, brokers, realConfig(brokers, func(c *Config) {
			c.SASL = SASL{Mechanism: MechanismSCRAMSHA512, Username: env[1], PasswordFile: file}
		}))
	})
	t.Run("SCRAM-SHA-512 wrong password", func(t *testing.T) {
		env := secureEnv(t, envSCRAMBrokers, envSCRAMUser, envSCRAMPassword)
		brokers := strings.Split(env[0], ",")
		wrong := "wrong-" + env[2]
		wantAuthFailed(t, connectErr(t, brokers, realConfig(brokers, func(c *Config) {
			c.SASL = SASL{Mechanism: MechanismSCRAMSHA512, Username: env[1], Password: Secret(wrong)}
		})), wrong)
	})
	t.Run("SCRAM-SHA-512 unknown user", func(t *testing.T) {
		env := secureEnv(t, envSCRAMBrokers, envSCRAMPassword)
		brokers := strings.Split(env[0], ",")
		wantAuthFailed(t, connectErr(t, brokers, realConfig(brokers, func(c *Config) {
			c.SASL = SASL{Mechanism: MechanismSCRAMSHA512, Username: "nobody", Password: Secret(env[1])}
		})), env[1])
	})
	t.Run("tls+SCRAM-SHA-512", func(t *testing.T) {
		env := secureEnv(t, envTLSSCRAMBrokers, envCAFile, envSCRAMUser, envSCRAMPassword)
		brokers := strings.Split(env[0], ",")
		roundTrip(t, brokers, realConfig(brokers, func(c *Config) {
			c.TLS = TLS{Enabled: true, CAFile: env[1]}
			c.SASL = SASL{Mechanism: MechanismSCRAMSHA512, Username: env[2], Password: Secret(env[3])}
		}))
	})
	t.Run("tls+SCRAM-SHA-512 wrong password", func(t *testing.T) {
		env := secureEnv(t, envTLSSCRAMBrokers, envCAFile, envSCRAMUser, envSCRAMPassword)
		brokers := strings.Split(env[0], ",")
		wrong := "wrong-" + env[3]
		wantAuthFailed(t, connectErr(t, brokers, realConfig(brokers, func(c *Config) {
			c.TLS = TLS{Enabled: true, CAFile: env[1]}
			c.SASL = SASL{Mechanism: MechanismSCRAMSHA512, Username: env[2], Password: Secret(wrong)}
		})), wrong)
	})
	t.Run("tls+SCRAM-SHA-512 wrong ca", func(t *testing.T) {
		env := secureEnv(t, envTLSSCRAMBrokers, envSCRAMUser, envSCRAMPassword)
		brokers := strings.Split(env[0], ",")
		pki := newTestPKI(t)
		wantUnknownAuthority(t, connectErr(t, brokers, realConfig(brokers, func(c *Config) {
			c.TLS = TLS{Enabled: true, CAFile: pki.caFile}
			c.SASL = SASL{Mechanism: MechanismSCRAMSHA512, Username: env[1], Password: Secret(env[2])}
		})))
	})
}
