package bigquery

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Binding parameter names (manifest Field.binding "bigquery.<param>"), as the host passes
// them to FromBindings with the "bigquery." prefix removed.
const (
	ParamProjectID       = "project_id"
	ParamDatasetID       = "dataset_id"
	ParamLocation        = "location"
	ParamCredentialsJSON = "credentials_json" // a whole service-account key (secret)
	ParamPrivateKey      = "private_key"      // secret
	ParamPrivateKeyID    = "private_key_id"   // secret
	ParamClientEmail     = "client_email"     // secret
	ParamTokenURI        = "token_uri"        // secret
)

// FromBindings builds a Config from an export's bound parameters: project_id and
// dataset_id (required), location, and the service-account key either whole
// (credentials_json) or by field (private_key, private_key_id, client_email, token_uri;
// token_uri defaults to Google's). Endpoint and HTTPClient are left for the caller.
func FromBindings(params map[string]string) (Config, error) {
	cfg := Config{
		ProjectID: strings.TrimSpace(params[ParamProjectID]),
		DatasetID: strings.TrimSpace(params[ParamDatasetID]),
		Location:  strings.TrimSpace(params[ParamLocation]),
	}
	if cfg.ProjectID == "" {
		return cfg, errors.New("bigquery: the destination config binds no project (bigquery.project_id)")
	}
	if cfg.DatasetID == "" {
		return cfg, errors.New("bigquery: the destination config binds no dataset (bigquery.dataset_id)")
	}
	if raw := params[ParamCredentialsJSON]; raw != "" {
		var probe map[string]any
		if err := json.Unmarshal([]byte(raw), &probe); err != nil {
			return cfg, fmt.Errorf("bigquery: credentials_json is not a JSON object: %w", err)
		}
		cfg.CredentialsJSON = []byte(raw)
		return cfg, nil
	}
	key, email := params[ParamPrivateKey], params[ParamClientEmail]
	if key == "" || email == "" {
		return cfg, errors.New("bigquery: the service-account key needs private_key and client_email (bigquery.private_key, bigquery.client_email)")
	}
	// Keys pasted from a JSON file often keep literal "\n".
	if !strings.Contains(key, "\n") && strings.Contains(key, `\n`) {
		key = strings.ReplaceAll(key, `\n`, "\n")
	}
	tokenURI := params[ParamTokenURI]
	if tokenURI == "" {
		tokenURI = "https://oauth2.googleapis.com/token"
	}
	doc, err := json.Marshal(map[string]string{
		"type":           "service_account",
		"project_id":     cfg.ProjectID,
		"private_key_id": params[ParamPrivateKeyID],
		"private_key":    key,
		"client_email":   email,
		"token_uri":      tokenURI,
	})
	if err != nil {
		return cfg, err
	}
	cfg.CredentialsJSON = doc
	return cfg, nil
}
