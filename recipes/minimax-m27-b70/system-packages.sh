#!/usr/bin/env bash
# System packages for the B70 stack (the lab's 00-install-system-deps.sh, made repeatable and
# pinned). Usage: system-packages.sh VERSIONS_FILE LOCK_DIR [HOST_ROOT]
# HOST_ROOT (default /) is where the apt configuration is written: a stand-in host in tests.
set -euo pipefail
versions=$1
locks=$2
root=${3:-/}
root=${root%/}

if [ "$(id -u)" -ne 0 ]; then
  echo "system-packages: needs root (pinstack runs this step through sudo)" >&2
  exit 2
fi

base=(ca-certificates curl wget gnupg gpg-agent software-properties-common build-essential git
  git-lfs cmake ninja-build pkg-config ccache python3.12-dev python3.12-venv python3-pip jq
  ripgrep fd-find pciutils usbutils hwloc numactl clinfo intel-gpu-tools equivs
  linux-generic-hwe-24.04)
gpu=(level-zero level-zero-devel xpu-smi intel-opencl-icd libze-intel-gpu1 intel-ocloc
  intel-igc-core-2 intel-igc-opencl-2 intel-metrics-discovery intel-metrics-library libxpum1
  intel-oneapi-dpcpp-cpp-2025.3 intel-oneapi-dpcpp-cpp-2026.0 intel-oneapi-mkl-devel
  intel-oneapi-dnnl-devel-2026.0)

# A package with a recorded version is installed at that version.
pinned() {
  local pkg=$1 version
  version=$(awk -v p="$pkg" '$1 == p { print $2 }' "$versions")
  if [ -n "$version" ]; then printf '%s=%s\n' "$pkg" "$version"; else printf '%s\n' "$pkg"; fi
}

apt-get update
apt-get install -y --no-install-recommends "${base[@]}"
git lfs install --system

# The keyring path as apt sees it on the host; written under HOST_ROOT.
keyring=/usr/share/keyrings/oneapi-archive-keyring.gpg
lists=$root/etc/apt/sources.list.d
if [ ! -s "$root$keyring" ]; then
  mkdir -p "$(dirname "$root$keyring")"
  curl -fsSL https://apt.repos.intel.com/oneapi/gpgkey | gpg --dearmor --yes -o "$root$keyring.tmp"
  mv "$root$keyring.tmp" "$root$keyring"
fi
mkdir -p "$lists"
echo "deb [signed-by=$keyring] https://apt.repos.intel.com/oneapi all main" > "$lists/oneAPI.list"
if ! grep -rqs kobuk-team/intel-graphics "$lists" \
   && ! ls "$lists" 2>/dev/null | grep -q kobuk-team-ubuntu-intel-graphics; then
  add-apt-repository -y ppa:kobuk-team/intel-graphics
fi

apt-get update
mapfile -t gpu_pinned < <(for p in "${gpu[@]}"; do pinned "$p"; done; pinned libze1)
# Never a silent downgrade of an installed driver: apt refuses one and names the package,
# unless APT_ALLOW_DOWNGRADES=1 asks for the recorded versions whatever is installed.
downgrades=()
if [ "${APT_ALLOW_DOWNGRADES:-0}" = 1 ]; then downgrades=(--allow-downgrades); fi
if ! apt-get install -y --no-install-recommends "${downgrades[@]}" "${gpu_pinned[@]}"; then
  echo "system-packages: apt could not install the recorded GPU package versions: if it names" \
    "a downgrade, this host is past them (keep its versions: edit $versions; or go back:" \
    "B70_APT_ALLOW_DOWNGRADES=1); if a version is not found, the repository no longer offers" \
    "it (edit $versions)" >&2
  exit 1
fi

# The lock: every installed version, and any drift from the recorded ones.
mkdir -p "$locks"
{ dpkg-query -W -f='${Package} ${Version}\n' "${base[@]}" "${gpu[@]}" libze1 2>/dev/null || true; } \
  | sort > "$locks/apt.lock.tmp"
mv "$locks/apt.lock.tmp" "$locks/apt.lock"
drift=0
while read -r pkg want; do
  case "$pkg" in ''|'#'*) continue ;; esac
  have=$(awk -v p="$pkg" '$1 == p { print $2 }' "$locks/apt.lock")
  # shellcheck disable=SC2053
  if [[ $have != $want ]]; then
    echo "warning: $pkg is $have, the lab ran $want" >&2
    drift=1
  fi
done < "$versions"
[ "$drift" -eq 0 ] && echo "all recorded package versions installed"

# A held local libze1 shim from the lab's older route conflicts with the PPA's package.
if apt-mark showhold | grep -qx libze1; then
  echo "warning: libze1 is held (a local shim?): apt-mark unhold libze1" >&2
fi
echo "reboot now: the HWE kernel and the GPU driver take effect after it"
