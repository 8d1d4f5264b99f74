package distributor

import (
	"log"
	"os"
	"testing"

	"github.com/IBM/sarama"
)

func TestMain(m *testing.M) {
	if os.Getenv("BEND_TEST_LOG") != "" {
		sarama.Logger = log.New(os.Stderr, "[sarama] ", log.Lmicroseconds)
	}
	os.Exit(m.Run())
}
