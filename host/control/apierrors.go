package control

import (
	"context"
	"errors"
	"fmt"

	"github.com/sluicehq/sluice/abi"
	"github.com/sluicehq/sluice/api"
	"github.com/sluicehq/sluice/host/pluginreg"
	"github.com/sluicehq/sluice/host/runtime"
	"github.com/sluicehq/sluice/internal/configschema"
	"github.com/sluicehq/sluice/storage"
)

// API is the Host as the REST API sees it: the same operations, with the errors a client
// must understand turned into api errors (status, code, field).
type API struct{ *Host }

var _ api.Controller = API{}

// InstallPlugin refuses bad modules with a 422 naming what is wrong; with trusted keys
// configured, an upload without a signature too.
func (a API) InstallPlugin(ctx context.Context, wasm []byte, granted []string) (*storage.Plugin, error) {
	p, err := a.Host.InstallSignedPlugin(ctx, wasm, granted, nil)
	return p, installError(err)
}

func installError(err error) error {
	switch {
	case errors.Is(err, runtime.ErrInvalidPlugin), errors.Is(err, pluginreg.ErrUnsigned), errors.Is(err, pluginreg.ErrUntrusted):
		return api.InvalidPlugin(err.Error())
	case errors.Is(err, ErrPluginConflict):
		return fmt.Errorf("%w: %w", storage.ErrConflict, err)
	}
	return err
}

// ValidateDestination reports the plugin's refusal as a 422 naming the config field.
func (a API) ValidateDestination(ctx context.Context, p *storage.Plugin, public map[string]any, secretsSet []string) error {
	err := a.Host.ValidateDestination(ctx, p, public, secretsSet)
	var pe *runtime.PluginError
	if errors.As(err, &pe) {
		return api.InvalidDestination(pe.Err.Message, pe.Err.Field)
	}
	return err
}

// TestConnection reports a config the host cannot bind as a failed step, not a 500.
func (a API) TestConnection(ctx context.Context, p *storage.Plugin, cfg configschema.Stored) (abi.TestReport, error) {
	return a.Host.TestConnection(ctx, p, cfg)
}

// TestDestination reports a config the host cannot bind as a failed step, not a 500.
func (a API) TestDestination(ctx context.Context, exportID string) (abi.TestReport, error) {
	return a.Host.TestDestination(ctx, exportID)
}
