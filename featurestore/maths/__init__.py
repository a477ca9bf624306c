"""The numbers: log-mel and MFCC modules, the 57 GTZAN descriptors, normalisation statistics.

Pure functions and torch modules over plain numbers; nothing here knows a store, a spec or a file.
"""
