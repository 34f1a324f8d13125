#!/usr/bin/env bash
# Installs what the demo and the integration tests need, and nothing that is already there.
#
#   scripts/install-deps.sh            prometheus, promtool, prometheus-alertmanager, amtool (Debian packages)
#   scripts/install-deps.sh --python   also scikit-learn, pandas, numpy and pyarrow (reference scripts)
#   scripts/install-deps.sh --pyarrow  also pyarrow alone (the datasets test reads our files with it)
#
# Runs non-interactively on a fresh Debian or Ubuntu machine, as root or through sudo. Running it
# twice changes nothing the second time.
set -euo pipefail

want_python=false
python_packages=(scikit-learn pandas numpy pyarrow)
python_modules="sklearn, pandas, numpy, pyarrow"
for arg in "$@"; do
    case "$arg" in
        --python) want_python=true ;;
        --pyarrow)
            want_python=true
            python_packages=(pyarrow)
            python_modules=pyarrow
            ;;
        -h | --help)
            sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        *)
            echo "install-deps: unknown argument $arg (see --help)" >&2
            exit 2
            ;;
    esac
done

if [ "$(id -u)" -eq 0 ]; then
    as_root=()
elif command -v sudo >/dev/null 2>&1; then
    as_root=(sudo)
else
    as_root=()
fi

# binary -> Debian package that ships it
declare -A package_of=(
    [prometheus]=prometheus
    [promtool]=prometheus
    [prometheus-alertmanager]=prometheus-alertmanager
    [amtool]=prometheus-alertmanager
)

missing=()
for binary in prometheus promtool prometheus-alertmanager amtool; do
    if ! command -v "$binary" >/dev/null 2>&1; then
        package="${package_of[$binary]}"
        [[ " ${missing[*]-} " == *" $package "* ]] || missing+=("$package")
    fi
done

if [ "${#missing[@]}" -gt 0 ]; then
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "install-deps: missing ${missing[*]} and no apt-get here; install them with your package manager" >&2
        exit 1
    fi
    if [ "$(id -u)" -ne 0 ] && [ "${#as_root[@]}" -eq 0 ]; then
        echo "install-deps: missing ${missing[*]}; run this script as root (or install sudo)" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    # Refresh the index only when apt does not know the packages yet (fresh images ship without it).
    for package in "${missing[@]}"; do
        if ! apt-cache show "$package" >/dev/null 2>&1; then
            "${as_root[@]}" apt-get update -q
            break
        fi
    done
    # The packages' maintainer scripts start system services (Prometheus on :9090, Alertmanager on
    # :9093) that would hold those ports and scrape this machine. The demo and the tests start
    # their own instances on free ports, so keep the services from starting during the install,
    # unless the machine already has its own policy.
    policy=/usr/sbin/policy-rc.d
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | "${as_root[@]}" tee "$policy" >/dev/null
        "${as_root[@]}" chmod 755 "$policy"
        trap '"${as_root[@]}" rm -f "$policy"' EXIT
    fi
    echo "install-deps: installing ${missing[*]}"
    "${as_root[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
else
    echo "install-deps: prometheus, promtool, prometheus-alertmanager and amtool are installed"
fi

if [ "$want_python" = true ]; then
    if python3 -c "import $python_modules" >/dev/null 2>&1; then
        echo "install-deps: python packages ${python_packages[*]} are installed"
    else
        if ! python3 -m pip --version >/dev/null 2>&1; then
            export DEBIAN_FRONTEND=noninteractive
            "${as_root[@]}" apt-get update -q
            "${as_root[@]}" apt-get install -y -q --no-install-recommends python3-pip
        fi
        # Debian marks the system Python as externally managed (PEP 668); these are developer
        # tools for the reference scripts, installed for the current user.
        python3 -m pip install --user --quiet --break-system-packages "${python_packages[@]}" 2>/dev/null ||
            python3 -m pip install --user --quiet "${python_packages[@]}"
    fi
fi
