"""The live pipeline: sources, faces, routing, tracking, overlay, sinks, streams, the Analyzer."""
