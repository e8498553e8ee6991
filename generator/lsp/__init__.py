"""The language server (``cardgen lsp``): what an editor shows while a card is being written.

``analysis.py`` answers questions about one checked card (what is at this place, where is it
defined, which names fit here, which ▷ claims are missing); ``server.py`` speaks the Language Server
Protocol over stdio with pygls and keeps the open documents and their libraries.
"""
