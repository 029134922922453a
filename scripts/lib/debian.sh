# Shared bash for scripts that fetch from Debian without touching the host's apt state
# (scripts/install-qemu-matrix, scripts/build-qemu). Source it after setting PROG (and optionally
# SAY_FD, where progress goes: 1 or 2, default 2; NEED_TOOL_WHY, said when a tool is missing).
# It defines say/die/need_tool, the mirror choice (MIRROR), the host's security mirror
# (host_debian_security_mirror) and a mirror probe. Callers keep `set -euo pipefail`.

readonly KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg

say() { printf '%s: %s\n' "$PROG" "$*" >&"${SAY_FD:-2}"; }
die() {
  printf '%s: error: %s\n' "$PROG" "$1" >&2
  shift
  local line
  for line in "$@"; do printf '  %s\n' "$line" >&2; done
  exit 1
}

need_tool() {
  local tool=$1 fix=$2
  command -v "$tool" >/dev/null 2>&1 || die "'$tool' is missing${NEED_TOOL_WHY:+, needed $NEED_TOOL_WHY}." "fix: $fix"
}

# Every URI the host's apt sources name, one a line (one-line and deb822 formats).
host_apt_uris() {
  grep -hs '^[[:space:]]*deb[[:space:]]' /etc/apt/sources.list /etc/apt/sources.list.d/*.list |
    sed -E 's/\[[^]]*\]//' | awk '{print $2}'
  grep -hs '^[[:space:]]*URIs:' /etc/apt/sources.list.d/*.sources | sed -E 's/^[[:space:]]*URIs://' |
    tr ' ' '\n'
}

# The mirror the host's apt already uses for Debian (not debian-security), so downloads come from
# the same place as everything else; deb.debian.org when none can be read.
host_debian_mirror() {
  local uri
  uri=$(host_apt_uris | grep -E '^https?://[^ ]+/debian/?$' | grep -v -- '-security' | head -n1) || true
  printf '%s\n' "${uri%/}"
}

# The host's debian-security mirror (bookworm-security carries the point fixes of the host's own
# QEMU between point releases); deb.debian.org's when none can be read.
host_debian_security_mirror() {
  local uri
  uri=$(host_apt_uris | grep -E '^https?://[^ ]+/debian-security/?$' | head -n1) || true
  uri=${uri%/}
  printf '%s\n' "${uri:-http://deb.debian.org/debian-security}"
}

MIRROR="${QEMU_MIGTEST_DEBIAN_MIRROR:-}"
if [[ -z $MIRROR ]]; then
  MIRROR=$(host_debian_mirror)
  MIRROR=${MIRROR:-http://deb.debian.org/debian}
fi
MIRROR=${MIRROR%/}

# One small download proves the mirror answers before minutes are spent; apt-helper honours the
# host's apt proxy settings like apt-get itself.
probe_mirror() {
  local suite=$1 out
  out=$(mktemp)
  if ! /usr/lib/apt/apt-helper download-file "$MIRROR/dists/$suite/InRelease" "$out" >/dev/null 2>"$out.err"; then
    local why
    why=$(tail -n 2 "$out.err" | tr '\n' ' ')
    rm -f "$out" "$out.err"
    die "cannot reach the Debian mirror $MIRROR (fetching dists/$suite/InRelease failed: $why)" \
      "fix: check network access/proxy to the Debian mirror, or set QEMU_MIGTEST_DEBIAN_MIRROR=<url of a Debian mirror>"
  fi
  rm -f "$out" "$out.err"
}
