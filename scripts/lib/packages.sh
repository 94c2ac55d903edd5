# Installs Debian packages that are missing, so the scripts work on a fresh machine with only Swift.
# Usage: ensure_packages PACKAGE...
ensure_packages() {
    local missing=()
    for package in "$@"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
    done
    ((${#missing[@]})) || return 0
    echo "installing: ${missing[*]}" >&2
    local sudo=()
    [[ $(id -u) -eq 0 ]] || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Fails early, with a clear message, when the Swift toolchain is not on PATH.
require_swift() {
    command -v swift >/dev/null || { echo "swift is not on PATH: install the Swift toolchain first" >&2; exit 1; }
}
