"""Real servers for tests (nginx WebDAV, Ceph radosgw, pypiserver), started on 127.0.0.1."""
