# Plugins: first-party destination modules, built reproducibly into bin/plugins/.
# Included by the top-level Makefile. Two consecutive builds give identical bytes
# (-trimpath, -buildid=, no cgo; rustc with a fixed command line and remapped paths).

GO_PLUGINS   := s3 azure-blob gcs example bigquery snowflake http databricks postgres clickhouse redshift
RUST_PLUGINS := rust-jsonl
PLUGINS_DIR  := bin/plugins
RUSTC        ?= /usr/bin/rustc
# Build tags per Go plugin: sluice_abi_1_1 makes the SDK declare ABI 1.1 (the http capability).
GO_PLUGIN_TAGS_http := sluice_abi_1_1
GO_PLUGIN_TAGS_databricks := sluice_abi_1_1
GO_PLUGIN_TAGS_postgres := sluice_abi_1_1
GO_PLUGIN_TAGS_clickhouse := sluice_abi_1_1
GO_PLUGIN_TAGS_redshift := sluice_abi_1_1

GO_PLUGIN_WASM   := $(addprefix $(PLUGINS_DIR)/,$(addsuffix .wasm,$(GO_PLUGINS)))
RUST_PLUGIN_WASM := $(addprefix $(PLUGINS_DIR)/,$(addsuffix .wasm,$(RUST_PLUGINS)))

plugins: $(GO_PLUGIN_WASM) $(RUST_PLUGIN_WASM) ## build every plugin into bin/plugins/

# Go plugins are rebuilt every time (the go tool caches; make cannot see Go dependencies).
$(GO_PLUGIN_WASM): $(PLUGINS_DIR)/%.wasm: FORCE
	@mkdir -p $(PLUGINS_DIR)
	CGO_ENABLED=0 GOOS=wasip1 GOARCH=wasm $(GO) build -buildmode=c-shared -trimpath \
		-tags '$(GO_PLUGIN_TAGS_$*)' -ldflags="-s -w -buildid=" -o $@ ./plugins/$*

# The Rust SDK crate (sdk/rust), compiled once into an rlib the Rust plugins link with
# --extern: plain rustc, no cargo registry.
RUST_SDK_RLIB := $(BIN)/rust/libsluice_sdk.rlib
RUSTFLAGS_WASM := --edition 2018 -C opt-level=3 -C panic=abort -C codegen-units=1 \
	--remap-path-prefix=$(CURDIR)=. --target wasm32-wasi

$(RUST_SDK_RLIB): sdk/rust/src/lib.rs
	@mkdir -p $(dir $@)
	@$(RUSTC) --print target-list | grep -qx wasm32-wasi || { \
		echo "$(RUSTC) lacks wasm32-wasi: apt-get install -y rustc libstd-rust-dev-wasm32"; exit 1; }
	$(RUSTC) $(RUSTFLAGS_WASM) --crate-type rlib --crate-name sluice_sdk -o $@ $<

$(PLUGINS_DIR)/%.wasm: plugins/%/src/lib.rs $(RUST_SDK_RLIB)
	@mkdir -p $(PLUGINS_DIR)
	$(RUSTC) $(RUSTFLAGS_WASM) --crate-type cdylib -C lto -C strip=symbols \
		--extern sluice_sdk=$(RUST_SDK_RLIB) -o $@ $<

plugins-lock: plugins ## rewrite plugins.lock from the built plugins (after an intended change), then re-sign it
	$(GO) run ./cmd/sluice plugins lock --plugins-dir $(PLUGINS_DIR) --lock plugins.lock
	@$(MAKE) --no-print-directory plugins-sign

# Signatures of the pinned plugins (plugins.lock.sig). The default key is the repository's
# TEST key (keys/README.md): a release signs with the project's real key instead,
# PLUGIN_SIGNING_KEY=/path/to/key (docs/plugin-authors.md, "Signing first-party plugins").
PLUGIN_SIGNING_KEY  ?= keys/TEST-ONLY-plugin-signing.key
PLUGIN_TRUSTED_KEYS ?= keys/TEST-ONLY-plugin-signing.pub
plugins-sign: ## sign every plugin pinned in plugins.lock into plugins.lock.sig (PLUGIN_SIGNING_KEY; the test key by default)
	$(GO) run ./cmd/sluice plugins sign --key $(PLUGIN_SIGNING_KEY) --lock plugins.lock

plugins-repro: ## build the plugins twice and fail if any module differs
	@rm -rf $(PLUGINS_DIR) && $(MAKE) --no-print-directory plugins >/dev/null && \
		(cd $(PLUGINS_DIR) && sha256sum *.wasm) > /tmp/sluice-plugins.sha256.1 && \
		rm -rf $(PLUGINS_DIR) && $(MAKE) --no-print-directory plugins >/dev/null && \
		(cd $(PLUGINS_DIR) && sha256sum -c --quiet /tmp/sluice-plugins.sha256.1) && \
		echo "plugins are reproducible:" && cat /tmp/sluice-plugins.sha256.1

FORCE:
.PHONY: plugins plugins-lock plugins-sign plugins-repro FORCE
