"""Backbones other than the fused CNN (``manifest.backbone``): the registry lives in
:func:`uar_stream.model.store.load_ensemble`, which dispatches on the manifest."""
