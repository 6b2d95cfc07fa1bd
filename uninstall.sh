#!/usr/bin/env bash
# Remove Tapeline's program files. Recordings are compliance records: /etc/tapeline (config and
# keys) and /var/lib/tapeline (archive and index) are KEPT unless --purge is given together with
# --yes (or the typed confirmation). The tapeline system user is left in place: its uid may own
# files on backups and archives.
#
#   sudo ./uninstall.sh                   stop and remove units, venv, sysusers/tmpfiles/sysctl files
#   sudo ./uninstall.sh --purge --yes     ... and delete /etc/tapeline and /var/lib/tapeline
#   sudo ./uninstall.sh --root DIR ...    the same inside a scratch root (no systemctl)
set -Eeuo pipefail
umask 022
export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

APP=tapeline
ROOT=""
PURGE=0
YES=0
UNITS=("$APP-recorder.service" "$APP-web.service")

die() {
    echo "uninstall.sh: ERROR: $*" >&2
    exit 1
}
info() { echo "==> $*"; }

usage() {
    cat <<EOF
usage: $0 [--root DIR] [--purge [--yes]]

  --root DIR   uninstall from the scratch root DIR instead of /
  --purge      also delete /etc/tapeline (config, keys) and /var/lib/tapeline (ALL RECORDINGS)
  --yes        do not ask for the typed confirmation that --purge otherwise needs
EOF
}

while (($#)); do
    case "$1" in
    --root)
        (($# >= 2)) || die "--root needs a directory"
        ROOT="$2"
        shift 2
        ;;
    --root=*)
        ROOT="${1#--root=}"
        shift
        ;;
    --purge)
        PURGE=1
        shift
        ;;
    --yes | -y)
        YES=1
        shift
        ;;
    -h | --help)
        usage
        exit 0
        ;;
    *)
        usage >&2
        die "unknown argument: $1"
        ;;
    esac
done

[[ $EUID -eq 0 ]] || die "must run as root (try: sudo $0 $*)"
if [[ -n $ROOT ]]; then
    [[ -d $ROOT ]] || die "--root $ROOT: no such directory"
    ROOT="$(cd "$ROOT" && pwd)"
    [[ $ROOT != / ]] || ROOT=""
fi

if ((PURGE && !YES)); then
    [[ -t 0 ]] || die "--purge deletes every recording; add --yes to confirm non-interactively"
    echo "This deletes $ROOT/etc/$APP (keys: without them the archive cannot be read) and"
    echo "$ROOT/var/lib/$APP (every recording). Export or replicate what you must keep first."
    read -r -p "Type 'delete all recordings' to continue: " answer
    [[ $answer == "delete all recordings" ]] || die "not confirmed; nothing removed"
fi

if [[ -z $ROOT ]] && state="$(systemctl is-system-running 2>/dev/null || true)" &&
    [[ $state =~ ^(running|degraded|starting|initializing|maintenance)$ ]]; then
    info "stopping and disabling ${UNITS[*]}"
    systemctl disable --now -q "${UNITS[@]}" 2>/dev/null || true
elif [[ -z $ROOT ]]; then
    info "systemd is not running here; no units to stop"
fi

info "removing program files"
rm -f "${UNITS[@]/#/$ROOT/etc/systemd/system/}"
rm -f "$ROOT/etc/sysctl.d/60-$APP.conf"
rm -f "$ROOT/usr/lib/sysusers.d/$APP.conf" "$ROOT/usr/lib/tmpfiles.d/$APP.conf"
rm -rf "$ROOT/opt/${APP:?}"
if [[ -z $ROOT ]] && [[ ${state:-} =~ ^(running|degraded|starting|initializing|maintenance)$ ]]; then
    systemctl daemon-reload
fi

if ((PURGE)); then
    info "purging $ROOT/etc/$APP and $ROOT/var/lib/$APP"
    rm -rf "$ROOT/etc/${APP:?}" "$ROOT/var/lib/${APP:?}"
else
    info "kept $ROOT/etc/$APP and $ROOT/var/lib/$APP (remove with --purge --yes)"
fi
info "the $APP system user was kept"
