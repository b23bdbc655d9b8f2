#!/usr/bin/env bash
# Sandboxing tools for the local runtime: bubblewrap gives each container its own network
# namespace, slirp4netns gives that namespace outbound access. Installed when we are root and
# they are missing; otherwise the runtime says what to install.
set -euo pipefail
missing=()
command -v bwrap >/dev/null || missing+=(bubblewrap)
command -v slirp4netns >/dev/null || missing+=(slirp4netns)
# Headless Chromium for the dashboard's browser tests (Playwright drives the Debian build).
command -v chromium >/dev/null || missing+=(chromium)
if [ ${#missing[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
else
  echo "note: install ${missing[*]} for per-container network namespaces (sudo apt-get install ${missing[*]})" >&2
fi
