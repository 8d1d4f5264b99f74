package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bendstream/bend/internal/kafka"
)

// TestKafkaSASLPasswordFromEnv checks that the SASL password reaches
// kafka.sasl.password from BEND_KAFKA_SASL_PASSWORD (and its file from
// BEND_KAFKA_SASL_PASSWORD_FILE) through viper's environment binding, and
// that a loaded configuration never prints it.
func TestKafkaSASLPasswordFromEnv(t *testing.T) {
	const pw = "env-s3cret-value"
	yaml := "kafka:\n  brokers: [127.0.0.1:9092]\n  sasl:\n    mechanism: SCRAM-SHA-512\n    username: bend\n"
	t.Run("password", func(t *testing.T) {
		t.Setenv("BEND_KAFKA_SASL_PASSWORD", pw)
		cfg, err := Load(writeFile(t, yaml))
		if err != nil {
			t.Fatalf("Load: %v", err)
		}
		if cfg.Kafka.SASL.Password != kafka.Secret(pw) {
			t.Errorf("kafka.sasl.password from the environment: got %d bytes, want %d", len(cfg.Kafka.SASL.Password), len(pw))
		}
		for _, out := range []string{fmt.Sprintf("%v", cfg), fmt.Sprintf("%+v", cfg), fmt.Sprintf("%#v", cfg)} {
			if strings.Contains(out, pw) {
				t.Fatalf("the printed configuration contains the password")
			}
		}
		sc, err := cfg.Kafka.Sarama(nil)
		if err != nil {
			t.Fatalf("Sarama: %v", err)
		}
		if !sc.Net.SASL.Enable || sc.Net.SASL.Password != pw {
			t.Errorf("sarama Net.SASL: enabled %v, password from the environment %v; want both", sc.Net.SASL.Enable, sc.Net.SASL.Password == pw)
		}
	})
	t.Run("password file", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "password")
		if err := os.WriteFile(file, []byte(pw+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		t.Setenv("BEND_KAFKA_SASL_PASSWORD_FILE", file)
		cfg, err := Load(writeFile(t, yaml))
		if err != nil {
			t.Fatalf("Load: %v", err)
		}
		if cfg.Kafka.SASL.PasswordFile != file {
			t.Errorf("kafka.sasl.password_file = %q, want %q", cfg.Kafka.SASL.PasswordFile, file)
		}
	})
	t.Run("missing", func(t *testing.T) {
		_, err := Load(writeFile(t, yaml))
		if err == nil || !strings.Contains(err.Error(), "kafka.sasl.password") {
			t.Fatalf("Load without a password = %v, want an error naming kafka.sasl.password", err)
		}
	})
}
