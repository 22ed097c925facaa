"""Package data: the shipped default model.

In a wheel, ``uar_stream/shipped/default/`` holds engines/default (manifest, member weights,
model card); setup.py maps it from the repository, where engines/default is the only copy.
Found by :func:`uar_stream.model.locate.shipped_model_dir`; nothing here is imported for use.
"""
