"""The browser studio (Gradio Blocks): app.py assembles one module per tab; see studio/ui/app.py. Importing it loads no torch."""
