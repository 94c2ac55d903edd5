# Installs redis-py (the Python Redis client) into .build/python for the integration tests, and exports
# RATELIMITD_PYTHONPATH pointing at it. The version is pinned so the tests see the client's real defaults
# (redis-py 8 opens every connection with HELLO 3).
REDIS_PY_VERSION=8.1.0

ensure_python_redis() {
    command -v python3 >/dev/null || ensure_packages python3
    python3 -m pip --version >/dev/null 2>&1 || ensure_packages python3-pip
    local target=.build/python
    if ! PYTHONPATH=$target python3 -c "import redis, sys; sys.exit(redis.__version__ != '$REDIS_PY_VERSION')" 2>/dev/null; then
        rm -rf "$target"
        # --target keeps it out of the system's site-packages; Debian's pip still wants the explicit flag.
        python3 -m pip install -q --disable-pip-version-check --target "$target" "redis==$REDIS_PY_VERSION" 2>/dev/null ||
            python3 -m pip install -q --disable-pip-version-check --break-system-packages --target "$target" "redis==$REDIS_PY_VERSION"
    fi
    RATELIMITD_PYTHONPATH=$(cd "$target" && pwd)
    export RATELIMITD_PYTHONPATH
}
