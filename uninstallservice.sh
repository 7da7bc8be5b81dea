#!/bin/sh
# Remove dbus-btbattery from Venus OS: stop the runit service, remove its link, its rc.local block, the
# program folder /data/dbus-btbattery, the /etc/dbus-btbattery link and the GUI plugin (its
# /data/apps/enabled link and /data/apps/available folder).
#
#   ./uninstallservice.sh           keep the settings in /data/etc/dbus-btbattery (a re-install finds them)
#   ./uninstallservice.sh --purge   also remove the settings and the log folder
#
# BTBATTERY_ROOT (default /) works on another root directory instead; the tests use it. svc is only used on
# the real root and only when it exists. Safe to run again. POSIX sh.
set -eu

NAME=dbus-btbattery
APP_DIR=/data/$NAME
CONF_DIR=/data/etc/$NAME
ETC_LINK=/etc/$NAME
SERVICE_LINK=/service/$NAME
LOG_DIR=/var/log/$NAME
RC_LOCAL=/data/rc.local
BLOCK_BEGIN="# >>> $NAME >>> written by installservice.sh, removed by uninstallservice.sh"
BLOCK_END="# <<< $NAME <<<"
APP_AVAILABLE=/data/apps/available/$NAME
APP_ENABLED=/data/apps/enabled/$NAME

ROOT=${BTBATTERY_ROOT:-/}
ROOT=${ROOT%/}

say() { printf '%s\n' "$*"; }
warn() { printf 'uninstallservice.sh: warning: %s\n' "$*" >&2; }
die() {
    printf 'uninstallservice.sh: %s\n' "$*" >&2
    exit 1
}

# Unlink first so svscan cannot start it again, then stop both supervisors for good (-x) before the
# folder they watch disappears.
stop_service() {
    if [ -L "$ROOT$SERVICE_LINK" ]; then
        rm -f "$ROOT$SERVICE_LINK"
        say "removed $SERVICE_LINK"
    fi
    if [ -z "$ROOT" ] && command -v svc >/dev/null 2>&1 && [ -d "$APP_DIR/service" ]; then
        svc -dx "$APP_DIR/service" "$APP_DIR/service/log" 2>/dev/null || true
    fi
}

# Drop every line from the start marker to the end marker; a start without an end removes nothing.
remove_boot_block() {
    rc=$ROOT$RC_LOCAL
    [ -f "$rc" ] && grep -qxF "$BLOCK_BEGIN" "$rc" || return 0
    awk -v begin="$BLOCK_BEGIN" -v end="$BLOCK_END" '
        NR == FNR {
            if ($0 == begin) unclosed = 1
            if ($0 == end) unclosed = 0
            next
        }
        FNR == 1 && unclosed { exit 1 }
        $0 == begin { skipping = 1; next }
        skipping { if ($0 == end) skipping = 0; next }
        { print }
    ' "$rc" "$rc" >"$rc.new" || {
        rm -f "$rc.new"
        die "$RC_LOCAL has a '$BLOCK_BEGIN' line without its '$BLOCK_END' line; fix it by hand and run again"
    }
    cat "$rc.new" >"$rc"
    rm -f "$rc.new"
    say "removed the $NAME block from $RC_LOCAL"
}

remove_etc_link() {
    etc=$ROOT$ETC_LINK
    if [ -L "$etc" ]; then
        rm -f "$etc" 2>/dev/null || warn "could not remove the $ETC_LINK link (read-only /etc?)"
    elif [ -e "$etc" ]; then
        warn "$ETC_LINK is not a link made by the installer; left as it is"
    fi
}

# The link first, so gui-v2 drops the plugin before its file goes.
remove_gui_plugin() {
    if [ -L "$ROOT$APP_ENABLED" ]; then
        rm -f "$ROOT$APP_ENABLED"
        say "removed $APP_ENABLED"
    fi
    if [ -e "$ROOT$APP_AVAILABLE" ]; then
        rm -rf "$ROOT$APP_AVAILABLE"
        say "removed $APP_AVAILABLE"
    fi
}

main() {
    purge=no
    for arg in "$@"; do
        case $arg in
        --purge) purge=yes ;;
        -h | --help)
            sed -n '2,8s/^# \{0,1\}//p' "$0"
            return 0
            ;;
        *) die "unknown argument '$arg' (use --purge to remove the settings too)" ;;
        esac
    done
    stop_service
    remove_gui_plugin
    remove_boot_block
    remove_etc_link
    if [ -e "$ROOT$APP_DIR" ]; then
        rm -rf "$ROOT$APP_DIR"
        say "removed $APP_DIR"
    fi
    if [ "$purge" = yes ]; then
        rm -rf "$ROOT$CONF_DIR" "$ROOT$LOG_DIR"
        say "removed $CONF_DIR and $LOG_DIR"
    elif [ -e "$ROOT$CONF_DIR" ]; then
        say "kept your settings in $CONF_DIR (./uninstallservice.sh --purge removes them)"
    fi
}

main "$@"
