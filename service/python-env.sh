# Sourced by service/run and by installservice.sh with $app set to the program folder: puts the Python
# packages shipped with the program on PYTHONPATH.
#
# ext/ holds bleak, reactivex and transitions (pure Python). bleak needs dbus-fast $DBUS_FAST_MIN or later: the
# firmware's python3-dbus-fast (compiled, faster) is used when it is that new; otherwise the pure-Python
# dbus-fast shipped in ext-dbus-fast/ (the firmware's 2.x lacks what bleak 3 imports).
# shellcheck disable=SC2154 # app is set by whoever sources this
DBUS_FAST_MIN=4
PYTHONPATH="$app/ext${PYTHONPATH:+:$PYTHONPATH}"
if [ -d "$app/ext-dbus-fast" ] && ! python3 -c "
import sys
from importlib.metadata import version
sys.exit(int(version('dbus-fast').split('.')[0]) < $DBUS_FAST_MIN)" 2>/dev/null; then
    PYTHONPATH="$app/ext-dbus-fast:$PYTHONPATH"
fi
export PYTHONPATH
