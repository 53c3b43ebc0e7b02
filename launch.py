"""Open the Tuning Studio in the browser: ``python launch.py [--host H] [--port P] [--share] [--auth USER:PASS] [--lang en|zh]
[--allow-host NAME] [--insecure-no-login]`` (``--help`` lists them all).

The same as ``studio webui [flags]``; see ``studio/ui/app.py`` for what each flag does. The flags are parsed before the UI
(gradio) is imported, so ``--help`` and a mistyped flag answer at once.
"""

import sys

from studio.ui.flags import parse_args

if __name__ == "__main__":
    args = parse_args(sys.argv[1:])
    from studio.ui.app import serve

    sys.exit(serve(args))
