def start(srv): pass
