package api

import (
	"io"
	"mime/multipart"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"
)

// CodeRegistryUnavailable: the host could not reach the registry of a plugin reference, or
// the registry failed (502).
const CodeRegistryUnavailable = "registry_unavailable"

// RegistryUnavailable is what a Controller returns when the registry of a reference cannot
// be reached or fails: 502 with the message as is.
func RegistryUnavailable(message string) *Error {
	return &Error{Status: http.StatusBadGateway, Code: CodeRegistryUnavailable, Message: message}
}

// maxSignatureField bounds one signature sent with an upload (a document is ~300 bytes).
const maxSignatureField = 16 << 10

// installReferenceRequest is POST /api/v1/plugins with a JSON body: the host pulls the
// plugin artifact the reference names from an OCI registry the operator allows
// (SLUICE_PLUGIN_REGISTRIES), with the signatures attached to it there.
type installReferenceRequest struct {
	Reference    string   `json:"reference"` // registry/repository:tag, @sha256:..., or both
	Capabilities []string `json:"capabilities"`
}

// referenceBody: a plugin install with this media type is a JSON reference request; JSON
// bodies are decoded whatever their type elsewhere too, so `curl -d` (form-urlencoded)
// and a missing type count. A module upload is multipart/form-data.
func referenceBody(mediaType string) bool {
	return mediaType == "application/json" || mediaType == "" || mediaType == "application/x-www-form-urlencoded"
}

func (s *Server) installPluginReference(c echo.Context) error {
	var req installReferenceRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	req.Reference = strings.TrimSpace(req.Reference)
	if req.Reference == "" {
		return BadRequest("reference is required", fieldErr("reference", "required: registry/repository:tag@sha256:<digest> (or a tag or a digest alone)"))
	}
	granted, err := grants(req.Capabilities)
	if err != nil {
		return err
	}
	p, err := s.ctl.InstallPluginFrom(c.Request().Context(), PluginSource{Reference: req.Reference}, granted)
	if err != nil {
		return err
	}
	return s.installed(c, p)
}

// formSignatures reads an upload's "signature" fields, values or files, each one signature
// document (`sluice plugins sign` writes it: curl -F signature=@plugin.wasm.sig).
func formSignatures(f *multipart.Form) ([][]byte, error) {
	tooLarge := BadRequest("signature: too large", fieldErr("signature", "a signature document is at most 16 KiB"))
	var out [][]byte
	for _, v := range f.Value["signature"] {
		if len(v) > maxSignatureField {
			return nil, tooLarge
		}
		out = append(out, []byte(v))
	}
	for _, fh := range f.File["signature"] {
		if fh.Size > maxSignatureField {
			return nil, tooLarge
		}
		r, err := fh.Open()
		if err != nil {
			return nil, err
		}
		b, err := io.ReadAll(r)
		r.Close()
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}
