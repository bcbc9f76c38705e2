#!/usr/bin/env bash
# Starts a local Azurite (Microsoft's Azure Storage emulator, from npm), blob service only,
# for the Azure Blob Storage tests, and prints the environment to use it:
#   eval "$(bash .ci/services/azurite.sh)"
# Idempotent: installs azurite into a cache directory if missing (node and npm from Debian
# if those are missing too), reuses a server that already answers on the port. Telemetry
# is off: nothing leaves loopback. The account is Azurite's well-known development account
# (devstoreaccount1 and its published key), not a secret.
# Everything but the final export line goes to stderr.
set -euo pipefail

VERSION=3.37.0
ADDR=${SLUICE_AZURITE_ADDR:-127.0.0.1:10000}
STATE=${SLUICE_AZURITE_DIR:-${TMPDIR:-/tmp}/sluice-azurite}
ACCOUNT=devstoreaccount1
KEY='Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='

log() { echo "azurite.sh: $*" >&2; }
answers() { (exec 3<>"/dev/tcp/${ADDR%:*}/${ADDR##*:}") 2>/dev/null; }

if ! answers; then
	if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
		SUDO=""
		if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
		log "installing nodejs and npm"
		$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q nodejs npm >&2 || {
			$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
			$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q nodejs npm >&2
		}
	fi
	bin="$STATE/pkg/node_modules/.bin/azurite-blob"
	if [ ! -x "$bin" ] || ! grep -q "\"version\": \"$VERSION\"" "$STATE/pkg/node_modules/azurite/package.json" 2>/dev/null; then
		log "installing azurite@$VERSION into $STATE/pkg (first time: about a minute)"
		mkdir -p "$STATE/pkg"
		npm install --prefix "$STATE/pkg" --no-audit --no-fund --loglevel=error "azurite@$VERSION" >&2
	fi
	mkdir -p "$STATE/data"
	log "starting $bin on $ADDR, data in $STATE/data, log $STATE/azurite.log"
	nohup "$bin" --blobHost "${ADDR%:*}" --blobPort "${ADDR##*:}" --location "$STATE/data" \
		--skipApiVersionCheck --loose --disableTelemetry --silent \
		>"$STATE/azurite.log" 2>&1 </dev/null &
	echo $! >"$STATE/azurite.pid"
	for _ in $(seq 1 150); do
		answers && break
		if ! kill -0 "$(cat "$STATE/azurite.pid")" 2>/dev/null; then
			log "exited early; log follows"
			cat "$STATE/azurite.log" >&2
			exit 1
		fi
		sleep 0.1
	done
	answers || { log "$ADDR does not answer after 15s"; cat "$STATE/azurite.log" >&2; exit 1; }
fi

echo "export SLUICE_TEST_AZURITE_CONNECTION_STRING='DefaultEndpointsProtocol=http;AccountName=$ACCOUNT;AccountKey=$KEY;BlobEndpoint=http://$ADDR/$ACCOUNT;'"
