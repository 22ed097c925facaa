"""Training of the shipped ensemble and the LDL baseline (``uar-stream train``)."""
