package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/bendstream/bend/internal/admin"
	"github.com/spf13/cobra"
)

// newHealthcheckCmd is `bend healthcheck`: exit 0 when a running bend's
// /readyz answers 200, else 1 with the reason. The container image's
// HEALTHCHECK runs it (the image has no shell, curl or wget).
func newHealthcheckCmd(stdout io.Writer) *cobra.Command {
	var addr string
	var live bool
	cmd := &cobra.Command{
		Use:   "healthcheck",
		Short: "Exit 0 when a running bend is ready (/readyz answers 200), else 1",
		Long: `Healthcheck asks a running bend's admin server whether it is ready (/readyz),
or with --live only whether it serves requests (/healthz). --admin defaults to
127.0.0.1:9180; an all-interfaces address (":9180") is asked on 127.0.0.1.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path := "/readyz"
			if live {
				path = "/healthz"
			}
			url := adminURL(addr) + path
			ctx, cancel := context.WithTimeout(cmd.Context(), 3*time.Second)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			if err != nil {
				return err
			}
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				return fmt.Errorf("healthcheck: %w", err)
			}
			defer res.Body.Close()
			body, _ := io.ReadAll(io.LimitReader(res.Body, 512))
			if res.StatusCode != http.StatusOK {
				return fmt.Errorf("healthcheck: %s answered %s: %s", url, res.Status, body)
			}
			_, err = fmt.Fprintf(stdout, "%s: %s", url, body)
			return err
		},
	}
	cmd.Flags().StringVar(&addr, "admin", admin.DefaultConfig().Addr, "admin server of the running bend, http://host:port or host:port")
	cmd.Flags().BoolVar(&live, "live", false, "check liveness (/healthz) instead of readiness")
	return cmd
}
