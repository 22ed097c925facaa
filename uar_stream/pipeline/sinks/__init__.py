"""pipeline/sinks"""
