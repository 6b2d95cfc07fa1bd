#!/usr/bin/env bash
# Tapeline appliance install and upgrade (Debian 12/13, Ubuntu 24.04). Run as root.
#
#   sudo ./install.sh              install or upgrade this machine, then (re)start the units
#   sudo ./install.sh --root DIR   install into the scratch root DIR (tests, image builds):
#                                  nothing on the host is touched, no service is started
#
# Every step ensures a state, so a second run with the same sources changes nothing:
# the venv is rebuilt only when the sources, the wheelhouse or the Python version changed
# (see /opt/tapeline/.install-stamp), files in /etc/tapeline are never overwritten (a newer
# shipped default lands beside them as *.dist), and units restart only when something changed.
set -Eeuo pipefail
umask 022
export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

APP=tapeline
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# Debian's interpreter: readable by the service user (a Python under /root is not).
PYTHON=/usr/bin/python3
ROOT=""
START=1
UNITS=("$APP-recorder.service" "$APP-web.service")

die() {
    echo "install.sh: ERROR: $*" >&2
    exit 1
}
info() { echo "==> $*"; }
note() { echo "    $*"; }

usage() {
    cat <<EOF
usage: $0 [--root DIR] [--no-start] [--python PATH]

  --root DIR      install into DIR instead of / (no host changes, no services started)
  --no-start      install but do not enable, start or restart the systemd units
  --python PATH   interpreter for the venv (default /usr/bin/python3, Debian's; >= 3.11)
  -h, --help      this text
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
    --no-start)
        START=0
        shift
        ;;
    --python)
        (($# >= 2)) || die "--python needs a path"
        PYTHON="$2"
        shift 2
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

# ---------------------------------------------------------------------------------------------
# Pre-flight: refuse with the exact fix.

[[ $EUID -eq 0 ]] || die "must run as root (try: sudo $0 $*)"

if [[ -n $ROOT ]]; then
    [[ -d $ROOT ]] || die "--root $ROOT: no such directory"
    ROOT="$(cd "$ROOT" && pwd)"
    [[ $ROOT != / ]] || ROOT=""
    START=0
fi

PREFIX="$ROOT/opt/$APP"
ETC="$ROOT/etc/$APP"

[[ -x $PYTHON ]] || die "no Python at $PYTHON (fix: apt-get install python3 python3-venv)"
PYTHON_REAL="$(readlink -f "$PYTHON")"
case "$PYTHON_REAL" in
/root/* | /home/*)
    die "$PYTHON resolves to $PYTHON_REAL, which the service user cannot read; use Debian's /usr/bin/python3"
    ;;
esac
"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null ||
    die "Python >= 3.11 required, $PYTHON is $("$PYTHON" -V 2>&1 || echo unknown) (Debian 12, Ubuntu 24.04 or newer)"
"$PYTHON" -c 'import ensurepip, venv' 2>/dev/null ||
    die "$PYTHON cannot create venvs (fix: apt-get install python3-venv)"
PYVER="$("$PYTHON" -c 'import sys; print(sys.version.split()[0])')"

# MemoryDenyWriteExecute=yes in the units needs an interpreter without an executable stack.
if command -v readelf >/dev/null; then
    stack="$(readelf -lW "$PYTHON_REAL" 2>/dev/null || true)"
    if grep -q 'GNU_STACK.*RWE' <<<"$stack"; then
        die "$PYTHON_REAL has an executable stack (GNU_STACK RWE); the units use MemoryDenyWriteExecute=yes: use Debian's python3"
    fi
else
    note "readelf not found (binutils); skipping the GNU_STACK check"
fi

for tool in systemd-sysusers systemd-tmpfiles sha256sum; do
    command -v "$tool" >/dev/null || die "$tool not found (fix: apt-get install systemd coreutils)"
done

# The passive tap compiles tap.filter with libpcap (tcpdump's own library); SIPREC and WhatsApp
# do not need it, so its absence is reported, not fatal.
if ! ldconfig -p 2>/dev/null | grep -q 'libpcap\.so'; then
    note "libpcap not found: the passive tap cannot compile tap.filter (fix: apt-get install libpcap0.8)"
fi

[[ -f $HERE/pyproject.toml || -d $HERE/wheelhouse ]] ||
    die "no pyproject.toml or wheelhouse/ beside $0: run it from the Tapeline source or release folder"

trap 'echo "install.sh: ERROR: failed at line $LINENO: $BASH_COMMAND" >&2' ERR

if [[ -n $ROOT ]]; then
    info "installing into scratch root $ROOT (host untouched, no services)"
else
    info "installing Tapeline on this machine"
fi

# ---------------------------------------------------------------------------------------------
# Helpers.

CHANGED_UNITS=0

# put SRC DST MODE OWNER GROUP: copy only when the content differs, then enforce mode and owner.
# Sets PUT_CHANGED=1 when the content changed (the return value is kept for errors, see set -e).
PUT_CHANGED=0
put() {
    local src="$1" dst="$2" mode="$3" owner="$4" group="$5"
    PUT_CHANGED=0
    mkdir -p "$(dirname "$dst")"
    if ! cmp -s "$src" "$dst"; then
        install -m "$mode" "$src" "$dst.tmp.$$"
        mv -f "$dst.tmp.$$" "$dst"
        note "wrote ${dst#"$ROOT"}"
        PUT_CHANGED=1
    fi
    chown "$owner:$group" "$dst"
    chmod "$mode" "$dst"
}

# Numeric uid/gid of the tapeline account: of the host, or of the scratch root's /etc files.
account_id() {
    local db="$1" name="$2"
    if [[ -n $ROOT ]]; then
        awk -F: -v n="$name" '$1 == n { print $3; found = 1; exit } END { exit !found }' "$ROOT/etc/$db"
    else
        getent "$db" "$name" | cut -d: -f3
    fi
}

# Read a value from the TOML config (empty when unset); the venv's config model has the final say.
config_get() {
    "$PYTHON" - "$ETC/$APP.toml" "$1" "$2" <<'PY'
import sys, tomllib
path, section, key = sys.argv[1:4]
try:
    with open(path, "rb") as f:
        value = tomllib.load(f).get(section, {}).get(key, "")
except (OSError, tomllib.TOMLDecodeError):
    value = ""
print(value if isinstance(value, str) else "")
PY
}

# ---------------------------------------------------------------------------------------------
# 1. Users and folders, declared in sysusers.d / tmpfiles.d.

info "users and folders"
mkdir -p "$ROOT/etc" "$ROOT/usr/lib/sysusers.d" "$ROOT/usr/lib/tmpfiles.d"
put "$HERE/systemd/$APP.sysusers" "$ROOT/usr/lib/sysusers.d/$APP.conf" 0644 0 0
put "$HERE/systemd/$APP.tmpfiles" "$ROOT/usr/lib/tmpfiles.d/$APP.conf" 0644 0 0
if [[ -n $ROOT ]]; then
    systemd-sysusers --root "$ROOT" "$ROOT/usr/lib/sysusers.d/$APP.conf"
    systemd-tmpfiles --create --root "$ROOT" "$ROOT/usr/lib/tmpfiles.d/$APP.conf"
else
    systemd-sysusers "/usr/lib/sysusers.d/$APP.conf"
    systemd-tmpfiles --create "/usr/lib/tmpfiles.d/$APP.conf"
fi
TL_UID="$(account_id passwd "$APP")" || die "user $APP was not created by systemd-sysusers"
TL_GID="$(account_id group "$APP")" || die "group $APP was not created by systemd-sysusers"
[[ -n $TL_UID && -n $TL_GID ]] || die "cannot resolve the $APP user/group"

# ---------------------------------------------------------------------------------------------
# 2. Config: add what is missing, never overwrite an edit.

info "config in ${ETC#"$ROOT"}"
SHIPPED_CONFIG="$HERE/config/$APP.toml"
if [[ -f $SHIPPED_CONFIG ]]; then
    if [[ ! -e $ETC/$APP.toml ]]; then
        put "$SHIPPED_CONFIG" "$ETC/$APP.toml" 0640 0 "$TL_GID"
    elif cmp -s "$SHIPPED_CONFIG" "$ETC/$APP.toml"; then
        [[ ! -e $ETC/$APP.toml.dist ]] || rm -f "$ETC/$APP.toml.dist"
    else
        put "$SHIPPED_CONFIG" "$ETC/$APP.toml.dist" 0640 0 "$TL_GID"
        if ((PUT_CHANGED)); then
            note "kept your ${ETC#"$ROOT"}/$APP.toml; the new shipped default is $APP.toml.dist"
        fi
    fi
else
    [[ -e $ETC/$APP.toml ]] || die "no config/$APP.toml beside $0 and none in ${ETC#"$ROOT"}"
fi

# Production paths from the config; inside --root they are redirected into DIR through the
# TAPELINE_<SECTION>__<KEY> overrides, so no tapeline command writes outside the scratch root.
abs_or() {
    local v="$1" fallback="$2"
    [[ $v == /* ]] || v="$fallback"
    echo "$v"
}
KEY_FILE="$(abs_or "$(config_get storage key_file)" "/etc/$APP/keys/archive.key")"
SIGNING_KEY_FILE="$(abs_or "$(config_get node signing_key_file)" "/etc/$APP/keys/signing.key")"
TLS_CERT_FILE="$(abs_or "$(config_get web tls_cert_file)" "/etc/$APP/tls/web.crt")"
TLS_KEY_FILE="$(abs_or "$(config_get web tls_key_file)" "/etc/$APP/tls/web.key")"
CMD_ENV=()
if [[ -n $ROOT ]]; then
    STORAGE_PATH="$(abs_or "$(config_get storage path)" "/var/lib/$APP/objects")"
    SPOOL_PATH="$(abs_or "$(config_get storage spool)" "/var/lib/$APP/spool")"
    DB_URL="$(config_get database url)"
    case "$DB_URL" in
    "") DB_URL="sqlite:///$ROOT/var/lib/$APP/index/$APP.db" ;;
    sqlite:////*) DB_URL="sqlite:///$ROOT${DB_URL#sqlite:///}" ;;
    esac
    CMD_ENV=(
        "TAPELINE_STORAGE__KEY_FILE=$ROOT$KEY_FILE"
        "TAPELINE_NODE__SIGNING_KEY_FILE=$ROOT$SIGNING_KEY_FILE"
        "TAPELINE_WEB__TLS_CERT_FILE=$ROOT$TLS_CERT_FILE"
        "TAPELINE_WEB__TLS_KEY_FILE=$ROOT$TLS_KEY_FILE"
        "TAPELINE_STORAGE__PATH=$ROOT$STORAGE_PATH"
        "TAPELINE_STORAGE__SPOOL=$ROOT$SPOOL_PATH"
        "TAPELINE_DATABASE__URL=$DB_URL"
    )
fi
KEY_PATHS=("$ROOT$KEY_FILE" "$ROOT$SIGNING_KEY_FILE" "$ROOT$TLS_CERT_FILE" "$ROOT$TLS_KEY_FILE")

# Run the tapeline CLI of a venv. The console script is run through the venv's interpreter so
# venv.new works before it is moved into place (its shebang already names the final path).
tapeline_cmd() {
    local venv="$1"
    shift
    env "${CMD_ENV[@]}" "$venv/bin/python" "$venv/bin/$APP" "$@"
}

# ---------------------------------------------------------------------------------------------
# 3. The venv: rebuilt as venv.new only when sources or interpreter changed, then swapped in.

info "virtualenv in ${PREFIX#"$ROOT"}/venv"
mkdir -p "$PREFIX"
chmod 0755 "$PREFIX"
WHEELHOUSE="$HERE/wheelhouse"
SRC_FILES=()
if [[ -d $WHEELHOUSE ]]; then
    SOURCE_KIND="wheelhouse"
    mapfile -d '' -t SRC_FILES < <(cd "$HERE" && find wheelhouse -type f -print0 | LC_ALL=C sort -z)
else
    SOURCE_KIND="source"
    tops=()
    for f in pyproject.toml setup.cfg setup.py MANIFEST.in README.md LICENSE LICENSE.txt src; do
        [[ ! -e $HERE/$f ]] || tops+=("$f")
    done
    mapfile -d '' -t SRC_FILES < <(cd "$HERE" && find "${tops[@]}" -type f \
        ! -path '*/__pycache__/*' ! -name '*.pyc' ! -path '*.egg-info/*' -print0 |
        LC_ALL=C sort -z)
fi
((${#SRC_FILES[@]})) || die "nothing to install from $HERE"
SOURCE_HASH="$(cd "$HERE" && sha256sum -- "${SRC_FILES[@]}" | sha256sum | cut -d' ' -f1)"
STAMP_TEXT="$(printf 'source=%s:%s\npython=%s %s\n' "$SOURCE_KIND" "$SOURCE_HASH" "$PYTHON_REAL" "$PYVER")"

venv_ok() {
    [[ -x $PREFIX/venv/bin/python && -f $PREFIX/venv/bin/$APP ]] &&
        "$PREFIX/venv/bin/python" -c 'import tapeline' 2>/dev/null
}

NEW_VENV=0
if [[ -f $PREFIX/.install-stamp ]] && [[ "$(cat "$PREFIX/.install-stamp")" == "$STAMP_TEXT" ]] && venv_ok; then
    note "unchanged (same sources and Python $PYVER): venv kept"
    ACTIVE_VENV="$PREFIX/venv"
else
    NEW_VENV=1
    ACTIVE_VENV="$PREFIX/venv.new"
    rm -rf "$PREFIX/venv.new"
    "$PYTHON" -m venv --prompt "$APP" "$PREFIX/venv.new"
    PIP=("$PREFIX/venv.new/bin/python" -m pip --disable-pip-version-check --no-input)
    if [[ $SOURCE_KIND == wheelhouse ]]; then
        note "installing from the offline wheelhouse"
        if [[ -f $WHEELHOUSE/requirements.lock ]]; then
            "${PIP[@]}" install -q --no-index --find-links "$WHEELHOUSE" --require-hashes \
                -r "$WHEELHOUSE/requirements.lock"
            "${PIP[@]}" install -q --no-index --no-deps "$WHEELHOUSE"/"$APP"-*.whl
        else
            "${PIP[@]}" install -q --no-index --find-links "$WHEELHOUSE" "$APP"
        fi
    else
        # Build from a private copy: pip's in-tree build would write build/ and *.egg-info
        # into the source folder.
        BUILD_DIR="$(mktemp -d)"
        trap 'rm -rf "$BUILD_DIR"' EXIT
        (cd "$HERE" && cp --parents -- "${SRC_FILES[@]}" "$BUILD_DIR/")
        note "installing $APP and its dependencies with pip (uses pip's cache)"
        "${PIP[@]}" install -q "$BUILD_DIR"
        rm -rf "$BUILD_DIR"
    fi
    # Point scripts at the final location before the move; venvs are not relocatable otherwise.
    for f in "$PREFIX/venv.new/bin/"*; do
        [[ -f $f && ! -L $f ]] || continue
        if grep -qF -- "$PREFIX/venv.new" "$f"; then
            sed -i "s|$PREFIX/venv.new|$PREFIX/venv|g" "$f"
        fi
    done
    "$PREFIX/venv.new/bin/python" -c 'import tapeline' || die "the new venv cannot import tapeline"
fi

# ---------------------------------------------------------------------------------------------
# 4. Keys: created once (never overwritten), root:tapeline 0640.

info "keys"
missing=0
for k in "${KEY_PATHS[@]}"; do
    [[ -e $k ]] || missing=1
done
if ((missing)); then
    tapeline_cmd "$ACTIVE_VENV" key generate -c "$ETC/$APP.toml" ||
        die "tapeline key generate failed; nothing was swapped in"
    note "generated the missing keys"
else
    note "all present"
fi
for k in "${KEY_PATHS[@]}"; do
    [[ -e $k ]] || die "$k is missing after tapeline key generate"
    chown "0:$TL_GID" "$k"
    chmod 0640 "$k"
done

# ---------------------------------------------------------------------------------------------
# 5. Check the config with the code that will run it, before anything goes live.

info "tapeline check-config"
rc=0
if [[ -z $ROOT ]] && command -v runuser >/dev/null; then
    # As the service user: proves it can read the config and keys, and leaves nothing root-owned.
    runuser -u "$APP" -- "$ACTIVE_VENV/bin/python" "$ACTIVE_VENV/bin/$APP" \
        check-config -c "$ETC/$APP.toml" || rc=$?
else
    tapeline_cmd "$ACTIVE_VENV" check-config -c "$ETC/$APP.toml" || rc=$?
fi
if ((rc != 0)); then
    die "${ETC#"$ROOT"}/$APP.toml failed check-config (exit $rc); fix it and re-run (the running version is untouched)"
fi

if ((NEW_VENV)); then
    rm -rf "$PREFIX/venv.old"
    if [[ -d $PREFIX/venv ]]; then
        mv "$PREFIX/venv" "$PREFIX/venv.old"
    fi
    mv "$PREFIX/venv.new" "$PREFIX/venv"
    printf '%s\n' "$STAMP_TEXT" >"$PREFIX/.install-stamp.tmp"
    mv -f "$PREFIX/.install-stamp.tmp" "$PREFIX/.install-stamp"
    chmod 0644 "$PREFIX/.install-stamp"
    note "new venv swapped in (Python $PYVER)"
fi

# ---------------------------------------------------------------------------------------------
# 6. Units and sysctl.

info "systemd units and sysctl"
for u in "${UNITS[@]}"; do
    put "$HERE/systemd/$u" "$ROOT/etc/systemd/system/$u" 0644 0 0
    ((PUT_CHANGED == 0)) || CHANGED_UNITS=1
done
put "$HERE/systemd/60-$APP-sysctl.conf" "$ROOT/etc/sysctl.d/60-$APP.conf" 0644 0 0
CHANGED_SYSCTL=$PUT_CHANGED

if [[ -n $ROOT ]]; then
    rm -rf "$PREFIX/venv.old"
    info "done: installed into $ROOT (no sysctl applied, no systemctl: scratch root)"
    exit 0
fi

if ((CHANGED_SYSCTL)); then
    sysctl -q -p "/etc/sysctl.d/60-$APP.conf" ||
        note "could not apply /etc/sysctl.d/60-$APP.conf now (container?); it applies at boot"
fi

if ((START == 0)); then
    rm -rf "$PREFIX/venv.old"
    info "done (--no-start: units installed but not started)"
    exit 0
fi

# ---------------------------------------------------------------------------------------------
# 7. (Re)start only when something changed; roll back the venv if the new one does not start.

state="$(systemctl is-system-running 2>/dev/null || true)"
case "$state" in
running | degraded | starting | initializing | maintenance) ;;
*)
    rm -rf "$PREFIX/venv.old"
    info "done, but systemd is not running here (state: ${state:-unreachable}); units not started."
    note "start them on a systemd host with: systemctl enable --now ${UNITS[*]}"
    exit 0
    ;;
esac

if ((CHANGED_UNITS)); then systemctl daemon-reload; fi
systemctl enable -q "${UNITS[@]}"
if ((NEW_VENV || CHANGED_UNITS)); then
    info "restarting ${UNITS[*]}"
    systemctl restart "${UNITS[@]}" || true
else
    systemctl start "${UNITS[@]}" || true
fi
failed=()
for u in "${UNITS[@]}"; do
    systemctl is-active -q "$u" || failed+=("$u")
done
if ((${#failed[@]})); then
    if [[ -d $PREFIX/venv.old ]]; then
        note "rolling back to the previous venv"
        rm -rf "$PREFIX/venv.failed"
        mv "$PREFIX/venv" "$PREFIX/venv.failed"
        mv "$PREFIX/venv.old" "$PREFIX/venv"
        rm -f "$PREFIX/.install-stamp"
        systemctl restart "${UNITS[@]}" || true
    fi
    die "${failed[*]} did not start: journalctl -u ${failed[0]} -n 50"
fi
rm -rf "$PREFIX/venv.old"
info "done: ${UNITS[*]} active"
