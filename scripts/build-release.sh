#!/usr/bin/env bash
# Build the Venus OS release archive: dist/dbus-btbattery-<version>.tar.gz (plus a .sha256 beside it);
# DIST_DIR puts it elsewhere.
#
# The archive unpacks to dbus-btbattery/: the program, configs/, service/, installservice.sh,
# uninstallservice.sh, gui-v2/dbus-btbattery.json (the Venus GUI plugin), ext/ with the pure-Python
# dependencies of scripts/release-requirements.txt, and
# ext-dbus-fast/ with dbus-fast built as pure Python (scripts/release-dbus-fast.txt), which the service uses
# only on a firmware without python3-dbus-fast (or one too old for bleak; btbattery/vendored.py). On the GX device:
#   tar -xzf dbus-btbattery-<version>.tar.gz -C /tmp && /tmp/dbus-btbattery/installservice.sh [MAC ...]
# (a first install may also unpack straight into /data and run /data/dbus-btbattery/installservice.sh;
# going through /tmp lets an upgrade replace the old files instead of unpacking over them).
#
# Only wheels that suit any platform are accepted (--platform any), and dbus-fast is built without Cython
# (SKIP_CYTHON=1), so nothing compiled can slip in; the build fails if a .so does. PYTHON picks the
# interpreter whose pip is used (default .venv/bin/python, else python3); RELEASE_PIP_CACHE the wheel cache
# for the dbus-fast build. The archive is reproducible: sorted, root-owned, dated by the last commit (or
# SOURCE_DATE_EPOCH).
set -euo pipefail
cd "$(dirname "$0")/.."

name=dbus-btbattery
version=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' btbattery/__init__.py)
[ -n "$version" ] || { echo "build-release.sh: no __version__ in btbattery/__init__.py" >&2; exit 1; }
python=${PYTHON:-}
if [ -z "$python" ]; then
    if [ -x .venv/bin/python ]; then python=.venv/bin/python; else python=python3; fi
fi
epoch=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
stage=$work/$name
dist=${DIST_DIR:-dist}
mkdir -p "$stage" "$dist"

# The program, as the installer expects to find it.
cp -R btbattery configs service "$stage/"
cp dbus-btbattery.py installservice.sh uninstallservice.sh "$stage/"
for optional in scan.py README.md LICENSE; do
    if [ -e "$optional" ]; then cp "$optional" "$stage/"; fi
done
# The guide runs "cp parallel_lfp_config.ini /etc/dbus-btbattery/config.ini" from the program's folder.
if [ -e configs/parallel_lfp_config.ini ]; then cp configs/parallel_lfp_config.ini "$stage/"; fi
# The Venus GUI plugin, as built and checked in (scripts/build-gui-plugin.py; a test keeps it fresh).
mkdir -p "$stage/gui-v2"
cp gui-v2/dbus-btbattery.json "$stage/gui-v2/"
printf '%s\n' "$version" >"$stage/VERSION"
find "$stage" -depth \( -name __pycache__ -o -name '*.pyc' -o -name '*.egg-info' \) -exec rm -rf {} +

# The pure-Python dependencies, for the Python of Venus OS v3.60+ (3.12).
"$python" -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
    --target "$stage/ext" --no-deps --no-compile \
    --only-binary=:all: --platform any --implementation py --abi none --python-version 3.12 \
    -r scripts/release-requirements.txt 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
# The fallback dbus-fast, built from source without its Cython speed-ups. Its own wheel cache, so that a
# compiled build cached by some other pip run is never picked up.
SKIP_CYTHON=1 "$python" -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
    --target "$stage/ext-dbus-fast" --no-deps --no-compile --no-binary dbus-fast \
    --cache-dir "${RELEASE_PIP_CACHE:-build/release-pip-cache}" -r scripts/release-dbus-fast.txt \
    2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
rm -rf "$stage/ext/bin" "$stage/ext-dbus-fast/bin"
find "$stage" -name '*.so' -print -quit | grep -q . && {
    echo "build-release.sh: a compiled module got into the archive" >&2
    exit 1
}

chmod 755 "$stage/installservice.sh" "$stage/uninstallservice.sh" "$stage/dbus-btbattery.py" \
    "$stage/service/run" "$stage/service/log/run"
archive=$dist/$name-$version.tar.gz
tar -C "$work" --sort=name --owner=0 --group=0 --numeric-owner --mode=a+rX,u+w,go-w --mtime="@$epoch" --format=gnu -cf - "$name" |
    gzip -9n >"$archive"
(cd "$dist" && sha256sum "${archive##*/}" >"${archive##*/}.sha256")
echo "$archive ($(du -k "$archive" | cut -f1) kB)"
