# A minimal Debian 12 root file system with systemd, for the test that boots the installed unit under a
# real systemd (systemd-nspawn). Built once with debootstrap into .build/systemd-rootfs and reused; the
# test copies it before each boot, so the cached tree stays clean.
# Usage: ensure_systemd_rootfs (exports RATELIMITD_SYSTEMD_ROOTFS)

# systemd, systemd-sysv, dbus and procps make a bootable system with systemctl and ps; libhiredis is the one
# library the daemon links that minbase lacks; nginx with its Lua module is the gateway the live test puts
# in front of the service, both under systemd. The Swift runtime is bound in read-only at boot.
SYSTEMD_ROOTFS_SUITE=bookworm
SYSTEMD_ROOTFS_PACKAGES=systemd,systemd-sysv,dbus,procps,libhiredis0.14,nginx,libnginx-mod-http-lua

ensure_systemd_rootfs() {
    ensure_packages debootstrap systemd-container
    local cache=.build/systemd-rootfs
    local stamp="$SYSTEMD_ROOTFS_SUITE $SYSTEMD_ROOTFS_PACKAGES"
    if [[ ! -d $cache/root || $(cat "$cache/stamp" 2>/dev/null) != "$stamp" ]]; then
        echo "building a $SYSTEMD_ROOTFS_SUITE root file system for the systemd test (once, about a minute)" >&2
        rm -rf "$cache"
        mkdir -p "$cache"
        # The archive this machine's apt already uses (debootstrap's own default otherwise).
        local mirror
        mirror=$(apt-get indextargets --format '$(REPO_URI) $(CODENAME)' 'Created-By: Packages' 2>/dev/null |
            awk -v suite="$(. /etc/os-release && echo "${VERSION_CODENAME:-}")" '$2 == suite { print $1; exit }')
        local sudo=()
        [[ $(id -u) -eq 0 ]] || sudo=(sudo)
        "${sudo[@]}" debootstrap --variant=minbase --include="$SYSTEMD_ROOTFS_PACKAGES" \
            "$SYSTEMD_ROOTFS_SUITE" "$cache/root.partial" ${mirror:+"$mirror"} >"$cache/debootstrap.log" 2>&1 ||
            { tail -20 "$cache/debootstrap.log" >&2; echo "debootstrap failed; the log is $cache/debootstrap.log" >&2; return 1; }
        mv "$cache/root.partial" "$cache/root"
        echo "$stamp" >"$cache/stamp"
    fi
    RATELIMITD_SYSTEMD_ROOTFS=$(cd "$cache/root" && pwd)
    export RATELIMITD_SYSTEMD_ROOTFS
}
