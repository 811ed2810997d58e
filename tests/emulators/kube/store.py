"""The object store: one resourceVersion counter, a bounded event history, watch fan-out.

Stored objects are never mutated in place: every write stores a fresh dict, so readers that
got a reference (watch events, listeners) see a stable value.
"""

import collections
import copy
import queue
import threading

from objects import now, new_uid


class Watcher:
    """One open watch: events matching its filter are queued for the HTTP handler."""

    MAX_QUEUE = 10000

    def __init__(self, key, namespace, match):
        self.key, self.namespace, self.match = key, namespace, match
        self.q = queue.Queue()
        self.closed = False

    def offer(self, etype, obj, old):
        if self.closed:
            return
        if self.namespace and obj["metadata"].get("namespace") != self.namespace:
            return
        new_ok = self.match(obj)
        old_ok = old is not None and self.match(old)
        if etype == "MODIFIED":
            if new_ok and old_ok:
                pass
            elif new_ok:
                etype = "ADDED"
            elif old_ok:
                etype = "DELETED"
            else:
                return
        elif not new_ok:
            return
        if self.q.qsize() >= self.MAX_QUEUE:     # a reader this slow is dropped, as the apiserver does
            self.close()
            return
        self.q.put((etype, obj))

    def close(self):
        self.closed = True
        self.q.put(None)


class Store:
    def __init__(self, history=1000):
        self.lock = threading.RLock()
        self.rv = 100
        self.objects = collections.defaultdict(dict)     # key -> {(ns, name): obj}
        self.history = collections.deque()               # (rv, key, type, obj, old)
        self.history_size = history
        self.oldest_rv = self.rv                         # events after this rv are all kept
        self.watchers = set()
        self.listeners = []                              # fn(key, type, obj, old), called under lock

    # -- reads -----------------------------------------------------------------------------
    def get(self, key, ns, name):
        with self.lock:
            return self.objects[key].get((ns or "", name))

    def list(self, key, ns=None):
        with self.lock:
            items = [o for (n, _), o in self.objects[key].items() if ns is None or ns == n]
            items.sort(key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))
            return items, self.rv

    def current_rv(self):
        with self.lock:
            return self.rv

    # -- writes ----------------------------------------------------------------------------
    def _emit(self, key, etype, obj, old):
        self.history.append((self.rv, key, etype, obj, old))
        while len(self.history) > self.history_size:
            self.oldest_rv = self.history.popleft()[0]
        for w in list(self.watchers):
            if w.key == key:
                w.offer(etype, obj, old)
        for fn in self.listeners:
            fn(key, etype, obj, old)

    def create(self, key, obj, dry_run=False):
        """obj is owned by the store afterwards. Caller checked existence under self.lock."""
        with self.lock:
            md = obj["metadata"]
            md.setdefault("uid", new_uid())
            md.setdefault("creationTimestamp", now())
            if dry_run:
                md["resourceVersion"] = str(self.rv)
                return obj
            self.rv += 1
            md["resourceVersion"] = str(self.rv)
            self.objects[key][(md.get("namespace", ""), md["name"])] = obj
            self._emit(key, "ADDED", obj, None)
            return obj

    def replace(self, key, obj, dry_run=False):
        with self.lock:
            md = obj["metadata"]
            k = (md.get("namespace", ""), md["name"])
            old = self.objects[key].get(k)
            if dry_run:
                return obj
            self.rv += 1
            md["resourceVersion"] = str(self.rv)
            self.objects[key][k] = obj
            self._emit(key, "MODIFIED", obj, old)
            return obj

    def remove(self, key, ns, name, dry_run=False):
        with self.lock:
            old = self.objects[key].get((ns or "", name))
            if old is None or dry_run:
                return old
            del self.objects[key][(ns or "", name)]
            self.rv += 1
            gone = copy.copy(old)
            gone["metadata"] = dict(old["metadata"], resourceVersion=str(self.rv))
            self._emit(key, "DELETED", gone, old)
            return gone

    # -- watch -----------------------------------------------------------------------------
    def watch(self, key, ns, match, since_rv):
        """Registers a watcher. since_rv None: from now (caller sends the initial state).
        Returns (watcher, backlog events) or raises LookupError when since_rv is compacted."""
        with self.lock:
            w = Watcher(key, ns, match)
            backlog = []
            if since_rv is not None:
                if since_rv < self.oldest_rv:
                    raise LookupError(since_rv)
                tmp = Watcher(key, ns, match)
                for rv, k, etype, obj, old in self.history:
                    if rv > since_rv and k == key:
                        tmp.offer(etype, obj, old)
                while not tmp.q.empty():
                    backlog.append(tmp.q.get())
            self.watchers.add(w)
            return w, backlog

    def unwatch(self, w):
        with self.lock:
            self.watchers.discard(w)

    def drop_watches(self):
        with self.lock:
            ws = list(self.watchers)
            self.watchers.clear()
        for w in ws:
            w.close()
        return len(ws)

    def compact(self):
        """Forgets the event history: any watch from an older resourceVersion gets 410."""
        with self.lock:
            self.history.clear()
            self.oldest_rv = self.rv
            return self.rv

    def reset(self, keep):
        """Removes every object whose key/namespace is not kept (keep(key, obj) -> bool)."""
        with self.lock:
            for key in list(self.objects):
                for k, obj in list(self.objects[key].items()):
                    if not keep(key, obj):
                        self.remove(key, k[0], k[1])
