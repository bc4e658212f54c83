"""Hello world: the smallest evserve server.  Run: python examples/hello.py"""
