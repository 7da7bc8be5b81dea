#!/bin/sh
# Install (or re-install) dbus-btbattery as a runit service on Venus OS.
#
#   ./installservice.sh                         install; keep the pack addresses already configured
#   ./installservice.sh MAC[:/path.ini] ...     install and set BATTERY_ADDRESSES in the config to these packs
#
# Runs from a git checkout or from an unpacked release archive (also in place, from /data/dbus-btbattery).
# Everything lives under /data, which firmware updates keep:
#   /data/dbus-btbattery/               the program, its pure-Python dependencies (ext/) and the runit service
#   /data/etc/dbus-btbattery/config.ini the user's settings: created once, never overwritten
#   /etc/dbus-btbattery                 -> /data/etc/dbus-btbattery (so /etc/dbus-btbattery/config.ini works)
#   /service/dbus-btbattery             -> /data/dbus-btbattery/service (runit starts it)
#   /var/log/dbus-btbattery/current     the service log (multilog)
#   /data/rc.local                      one marked block that re-creates both links at boot
#   /data/apps/available/dbus-btbattery/gui-v2/dbus-btbattery.json   the Venus GUI (gui-v2) plugin, enabled by
#   /data/apps/enabled/dbus-btbattery   -> /data/apps/available/dbus-btbattery (Venus OS v3.70+ loads it)
#
# BTBATTERY_ROOT (default /) installs into another root directory instead; the tests use it. svc is only
# used on the real root and only when it exists. POSIX sh: Venus OS runs this with busybox or bash alike.
set -eu

NAME=dbus-btbattery
APP_DIR=/data/$NAME
CONF_DIR=/data/etc/$NAME
ETC_LINK=/etc/$NAME
SERVICE_LINK=/service/$NAME
LOG_DIR=/var/log/$NAME
RC_LOCAL=/data/rc.local
REMOUNT_RW=/opt/victronenergy/swupdate-scripts/remount-rw.sh
FIRMWARE_FILE=/opt/victronenergy/version # its first line is the firmware version, e.g. v3.60
BLOCK_BEGIN="# >>> $NAME >>> written by installservice.sh, removed by uninstallservice.sh"
BLOCK_END="# <<< $NAME <<<"
GUI_PLUGIN=gui-v2/$NAME.json
APP_AVAILABLE=/data/apps/available/$NAME
APP_ENABLED=/data/apps/enabled/$NAME

ROOT=${BTBATTERY_ROOT:-/}
ROOT=${ROOT%/} # "" for the real root, so "$ROOT$APP_DIR" is always a valid path
SRC=$(cd "$(dirname "$0")" && pwd -P)

say() { printf '%s\n' "$*"; }
warn() { printf 'installservice.sh: warning: %s\n' "$*" >&2; }
die() {
    printf 'installservice.sh: %s\n' "$*" >&2
    exit 1
}

usage() {
    cat <<EOF
usage: ./installservice.sh [MAC[:/path/pack.ini] ...]

Installs $NAME under $APP_DIR and starts it as the runit service $SERVICE_LINK.
Pack addresses given here are written to BATTERY_ADDRESSES in $CONF_DIR/config.ini;
without them the addresses already in that file are kept. Uninstall with ./uninstallservice.sh.
EOF
}

# ---- pack addresses: all checked before anything on disk changes ----

is_mac() {
    case $1 in
    [0-9A-Fa-f][0-9A-Fa-f]:[0-9A-Fa-f][0-9A-Fa-f]:[0-9A-Fa-f][0-9A-Fa-f]:[0-9A-Fa-f][0-9A-Fa-f]:[0-9A-Fa-f][0-9A-Fa-f]:[0-9A-Fa-f][0-9A-Fa-f]) return 0 ;;
    *) return 1 ;;
    esac
}

# A per-pack file is an absolute .ini path of plain characters (the config is a space-separated list).
is_pack_file() {
    case $1 in
    /*.ini) ;;
    *) return 1 ;;
    esac
    case $1 in
    *[!A-Za-z0-9._/-]*) return 1 ;;
    esac
    return 0
}

ADDRESSES=""
check_addresses() {
    for arg in "$@"; do
        mac=$(printf '%s' "$arg" | cut -c1-17)
        rest=$(printf '%s' "$arg" | cut -c18-)
        if ! is_mac "$mac" || { [ -n "$rest" ] && [ "${rest#:}" = "$rest" ]; }; then
            die "'$arg' is not a pack address: expected AA:BB:CC:DD:EE:FF (six two-digit hex pairs), optionally followed by :/path/to/pack.ini; nothing was changed"
        fi
        if [ -n "$rest" ]; then
            file=${rest#:}
            if ! is_pack_file "$file"; then
                die "'$arg': the pack file must be an absolute path ending in .ini (letters, digits, . _ - /), written as $mac:/path/to/pack.ini; nothing was changed"
            fi
            [ -f "$ROOT$file" ] || warn "pack file $file does not exist yet; the service refuses to start until it does"
        fi
        mac=$(printf '%s' "$mac" | tr 'a-f' 'A-F')
        for seen in $ADDRESSES; do
            if [ "$(printf '%s' "$seen" | cut -c1-17)" = "$mac" ]; then
                die "pack $mac is listed twice; nothing was changed"
            fi
        done
        ADDRESSES="${ADDRESSES:+$ADDRESSES }$mac$rest"
    done
}

# ---- the program ----

check_source() {
    for need in btbattery/__init__.py dbus-btbattery.py configs/default_config.ini service/run service/log/run; do
        [ -e "$SRC/$need" ] || die "$SRC/$need is missing: run this script from a $NAME checkout or release archive"
    done
}

# Replace one file or folder in the program folder by a fresh copy: copy beside it first, then swap, so an
# interrupted install never leaves a half-copied package behind.
replace_item() {
    from=$SRC/$1
    to=$ROOT$APP_DIR/$1
    rm -rf "$to.new"
    cp -RL "$from" "$to.new"
    rm -rf "$to"
    mv "$to.new" "$to"
}

install_program() {
    dest=$ROOT$APP_DIR
    mkdir -p "$dest"
    if [ "$(cd "$dest" && pwd -P)" != "$SRC" ]; then
        for item in btbattery configs ext ext-dbus-fast dbus-btbattery.py scan.py parallel_lfp_config.ini \
            VERSION README.md installservice.sh uninstallservice.sh; do
            if [ -e "$SRC/$item" ]; then replace_item "$item"; fi
        done
        # A checkout's caches were compiled by another Python; the device compiles its own.
        find "$dest/btbattery" -depth -type d -name __pycache__ -exec rm -rf {} \;
        # service/ itself stays: runit keeps its supervise/ state in there while the service runs.
        mkdir -p "$dest/service/log"
        for file in run log/run; do
            cp "$SRC/service/$file" "$dest/service/$file.new"
            mv "$dest/service/$file.new" "$dest/service/$file"
        done
    fi
    chmod 755 "$dest/service/run" "$dest/service/log/run" "$dest/dbus-btbattery.py"
    [ -d "$dest/ext" ] || warn "no ext/ folder: bleak, reactivex and transitions must then come with this Python; on Venus OS install from the release archive (scripts/build-release.sh makes it)"
}

# ---- the config ----

# Before the /etc link exists, a real /etc/dbus-btbattery folder may hold the user's files: move them to
# /data/etc (never over a file already there) so the link can take its place.
adopt_etc_folder() {
    etc=$ROOT$ETC_LINK
    [ -d "$etc" ] && [ ! -L "$etc" ] || return 0
    for file in "$etc"/* "$etc"/.[!.]*; do
        [ -e "$file" ] || continue
        [ -e "$ROOT$CONF_DIR/${file##*/}" ] || mv "$file" "$ROOT$CONF_DIR/"
    done
    if rmdir "$etc" 2>/dev/null; then
        say "moved the files of $ETC_LINK to $CONF_DIR"
    else
        mv "$etc" "$etc.before-install"
        warn "$ETC_LINK held files that also exist in $CONF_DIR; they are kept in $ETC_LINK.before-install"
    fi
}

seed_config() {
    config=$ROOT$CONF_DIR/config.ini
    [ -e "$config" ] && return 0
    app=$ROOT$APP_DIR
    for template in "$app/configs/parallel_lfp_config.ini" "$app/configs/default_config.ini"; do
        if [ -f "$template" ]; then
            cp "$template" "$config"
            say "created $CONF_DIR/config.ini from ${template##*/}"
            return 0
        fi
    done
    printf '%s\n' "# $NAME settings; every key, its unit and default: $APP_DIR/configs/default_config.ini" \
        "[DEFAULT]" "BATTERY_ADDRESSES =" >"$config"
    say "created $CONF_DIR/config.ini"
}

# Set BATTERY_ADDRESSES in place: the first active line wins, else the first commented-out one, else a new
# line after the first section header (or a new [DEFAULT] section). Every other line stays as it was.
set_addresses() {
    config=$ROOT$CONF_DIR/config.ini
    awk -v value="$ADDRESSES" '
        function is_key(line)  { return line ~ /^[ \t]*BATTERY_ADDRESSES[ \t]*[=:]/ }
        function is_note(line) { return line ~ /^[ \t]*[#;][ \t]*BATTERY_ADDRESSES[ \t]*[=:]/ }
        NR == FNR {
            if (!active && is_key($0)) active = FNR
            if (!noted && is_note($0)) noted = FNR
            if (!header && $0 ~ /^[ \t]*\[[^]]*\]/) header = FNR
            next
        }
        FNR == 1 && !active && !noted && !header { print "[DEFAULT]"; print "BATTERY_ADDRESSES = " value }
        FNR == (active ? active : noted) { print "BATTERY_ADDRESSES = " value; next }
        { print }
        FNR == header && !active && !noted { print "BATTERY_ADDRESSES = " value }
    ' "$config" "$config" >"$config.new"
    mv "$config.new" "$config"
    say "BATTERY_ADDRESSES = $ADDRESSES (in $CONF_DIR/config.ini)"
}

# ---- links, log folder, boot hook ----

# Create a symbolic link, replacing a stale link (never a real file or folder).
link() {
    target=$1
    path=$ROOT$2
    if [ -L "$path" ]; then
        [ "$(readlink "$path")" = "$target" ] && return 0
        rm -f "$path"
    fi
    [ -e "$path" ] && die "$2 exists and is not a link; move it away and run again"
    mkdir -p "$(dirname "$path")"
    ln -s "$target" "$path"
}

# /etc is on the read-only root file system of Venus OS: make it writable once if the link is missing.
link_etc() {
    if [ -e "$ROOT$ETC_LINK" ] && [ ! -L "$ROOT$ETC_LINK" ]; then
        warn "$ETC_LINK exists and is not a link; edit $CONF_DIR/config.ini directly"
        return 0
    fi
    if link "$CONF_DIR" "$ETC_LINK" 2>/dev/null; then return 0; fi
    if [ -z "$ROOT" ] && [ -x "$REMOUNT_RW" ]; then
        "$REMOUNT_RW" >/dev/null 2>&1 || true
        if link "$CONF_DIR" "$ETC_LINK" 2>/dev/null; then return 0; fi
    fi
    warn "could not link $ETC_LINK to $CONF_DIR; edit $CONF_DIR/config.ini directly"
}

boot_block() {
    cat <<EOF
$BLOCK_BEGIN
# Firmware updates rebuild /etc and /service: link both back to $NAME under /data.
# (BTBATTERY_ROOT is unset at boot; the tests set it to run this block in a scratch root.)
(
    r="\${BTBATTERY_ROOT:-}"
    if [ -d "\$r$APP_DIR/service" ]; then
        mkdir -p "\$r$LOG_DIR"
        if [ ! -e "\$r$ETC_LINK" ] && [ ! -L "\$r$ETC_LINK" ]; then
            # /etc is read-only after a firmware update: make it writable once to restore the link.
            ln -s $CONF_DIR "\$r$ETC_LINK" 2>/dev/null || {
                [ -z "\$r" ] && [ -x $REMOUNT_RW ] && $REMOUNT_RW >/dev/null 2>&1 &&
                    ln -s $CONF_DIR "\$r$ETC_LINK"
            } || true
        fi
        [ -L "\$r$SERVICE_LINK" ] || ln -s $APP_DIR/service "\$r$SERVICE_LINK" || true
    fi
)
$BLOCK_END
EOF
}

# Put the boot block into rc.local exactly once: replace it where it is, else add it before a final
# top-level "exit" (lines after it would never run), else at the end.
install_boot_block() {
    rc=$ROOT$RC_LOCAL
    mkdir -p "$(dirname "$rc")"
    [ -e "$rc" ] || printf '#!/bin/sh\n\n' >"$rc"
    boot_block >"$rc.block"
    awk -v begin="$BLOCK_BEGIN" -v end="$BLOCK_END" -v blockfile="$rc.block" '
        function emit(  line) {
            while ((getline line < blockfile) > 0) print line
            close(blockfile)
            placed = 1
        }
        NR == FNR {
            if ($0 == begin) { present = 1; unclosed = 1 }
            if ($0 == end) unclosed = 0
            if ($0 ~ /^exit([ \t].*)?$/) last_exit = FNR
            next
        }
        FNR == 1 && unclosed { print "unterminated block" > "/dev/stderr"; exit 1 }
        present && $0 == begin { if (!placed) emit(); skipping = 1; next }
        skipping { if ($0 == end) skipping = 0; next }
        !present && FNR == last_exit && !placed { emit() }
        { print }
        END { if (!placed) emit() }
    ' "$rc" "$rc" >"$rc.new" || {
        rm -f "$rc.block" "$rc.new"
        die "$RC_LOCAL has a '$BLOCK_BEGIN' line without its '$BLOCK_END' line; fix it by hand and run again"
    }
    rm -f "$rc.block"
    cat "$rc.new" >"$rc" # keep the file (and its owner) in place
    rm -f "$rc.new"
    chmod 755 "$rc"
}

# ---- the GUI plugin ----

# gui-v2 reads every *.json in the gui-v2/ folder of each app linked into /data/apps/enabled, and watches
# those folders: the new file is written beside the old one under another name, then moved in place.
install_gui_plugin() {
    from=$SRC/$GUI_PLUGIN
    if [ ! -f "$from" ]; then
        warn "no $GUI_PLUGIN here: the GUI shows the bank as one battery, without the pack pages"
        return 0
    fi
    dir=$ROOT$APP_AVAILABLE/gui-v2
    mkdir -p "$dir"
    cp "$from" "$dir/$NAME.json.new"
    mv "$dir/$NAME.json.new" "$dir/$NAME.json"
    link "$APP_AVAILABLE" "$APP_ENABLED"
}

# ---- runit ----

start_service() {
    created=$1
    if [ -n "$ROOT" ] || ! command -v svc >/dev/null 2>&1; then
        return 0
    fi
    if [ "$created" = no ] && svstat "$SERVICE_LINK" 2>/dev/null | grep -q ': up'; then
        svc -t "$SERVICE_LINK" && say "restarted the service with the new program"
    fi
    # A new link is started by svscan within a few seconds.
}

# ---- the Python it will run on: checked before anything on disk changes ----

# On the device itself (or when BTBATTERY_CHECK_PYTHON=1; a scratch root has no device Python).
python_checks() { [ -z "$ROOT" ] || [ "${BTBATTERY_CHECK_PYTHON:-}" = 1 ]; }

firmware() {
    version=$(sed -n 1p "$ROOT$FIRMWARE_FILE" 2>/dev/null) || true
    printf 'Venus OS %s' "${version:-(unknown: no $FIRMWARE_FILE)}"
}

# Venus OS before v3.60 has Python 3.8: refuse in one line.
check_firmware() {
    python_checks || return 0
    command -v python3 >/dev/null 2>&1 || die "no python3 found ($(firmware)): $NAME needs Venus OS v3.60 or later; nothing was changed"
    found=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2]); sys.exit(sys.version_info < (3, 11))') ||
        die "$(firmware) has Python ${found:-?}: $NAME needs Venus OS v3.60 or later (Python 3.11+); nothing was changed"
}

# Prove that the new program starts before it replaces the installed one: run its real entry script the way
# the runit service does (no PYTHONPATH; the script puts ext/ on the path itself), then import every module
# of the program and the packages it needs. On failure the installed version stays as it is, and running.
check_program_starts() {
    python_checks || return 0
    if ! (
        cd /
        unset PYTHONPATH PYTHONHOME PYTHONSTARTUP
        exec python3 - "$SRC" <<'EOF'
import runpy, sys
try:
    runpy.run_path(sys.argv[1] + "/dbus-btbattery.py", run_name="installservice")
    from btbattery.versions import describe, import_problems, versions
    problems = import_problems()
except Exception as exc:  # the entry script, or the check itself, cannot load
    name = getattr(exc, "name", None)
    problems = ["No module named '%s'" % name if isinstance(exc, ModuleNotFoundError) else repr(exc)]
for problem in problems:
    print("installservice.sh: the service cannot start: " + problem, file=sys.stderr)
if problems:
    sys.exit(1)
print("  " + describe("dbus-fast", versions()["dbus-fast"]))
EOF
    ); then
        die "$(firmware), Python $(python3 -c 'import platform; print(platform.python_version())'): nothing was installed or changed; the installed version (if any) keeps running"
    fi
}

main() {
    case ${1:-} in
    -h | --help)
        usage
        return 0
        ;;
    -*) die "unknown option '$1' (see --help)" ;;
    esac
    check_addresses "$@"
    check_source
    check_firmware
    check_program_starts

    install_program
    mkdir -p "$ROOT$CONF_DIR"
    adopt_etc_folder
    seed_config
    [ -z "$ADDRESSES" ] || set_addresses
    link_etc
    mkdir -p "$ROOT$LOG_DIR"
    install_boot_block
    created=yes
    [ -L "$ROOT$SERVICE_LINK" ] && created=no
    link "$APP_DIR/service" "$SERVICE_LINK"
    install_gui_plugin
    start_service "$created"

    say "installed $NAME in $APP_DIR"
    say "  settings: $CONF_DIR/config.ini (also $ETC_LINK/config.ini); pack addresses go in BATTERY_ADDRESSES"
    say "  log:      cat $LOG_DIR/current | tai64nlocal"
    say "  GUI:      the battery's device page lists Parallel bank, Packs and Cells (Venus OS v3.70+)"
    if ! grep -q '^[[:blank:]]*BATTERY_ADDRESSES[[:blank:]]*[=:][[:blank:]]*[0-9A-Fa-f]' "$ROOT$CONF_DIR/config.ini"; then
        say "  no packs configured yet: run ./installservice.sh AA:BB:CC:DD:EE:FF ... or edit BATTERY_ADDRESSES"
    fi
}

main "$@"
