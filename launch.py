"""Open the Tuning Studio in the browser: ``python launch.py [--host H] [--port P] [--share] [--auth USER:PASS] [--lang en|zh]``.

The same as ``studio webui [flags]``; see ``studio/ui/app.py`` for what each flag does.
"""

import sys

from studio.ui.app import main

if __name__ == "__main__":
    sys.exit(main())
