"""Backbones other than the fused CNN (``manifest.backbone``): the registry lives in
:func:`uar_stream.model.ensemble.load_ensemble`, which dispatches on the manifest."""
