"""The demo page (``make demo``): a person's own input, a trained network's answer, step by
step. ``runs`` finds the trained runs, ``answers`` computes what the page shows, ``figures``
draws it, ``page`` lays it out with Gradio, ``__main__`` serves it."""

import os

# Before Gradio is imported anywhere: no usage reports, no version checks; the page and its
# tests work offline.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
