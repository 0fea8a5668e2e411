import threading, http.server, functools, time, sys
from clipctl.data.build import build_shards, BuildFailed
if __name__ == "__main__":
    h = functools.partial(http.server.SimpleHTTPRequestHandler, directory="/tmp/srv")
    class Q(h.func):
        def log_message(self,*a): pass
    srv = http.server.ThreadingHTTPServer(("127.0.0.1",0), functools.partial(Q, directory="/tmp/srv"))
    port = srv.server_address[1]
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    with open("/tmp/urls.csv","w") as f:
        f.write("url,caption\n")
        for i in range(6): f.write(f"http://127.0.0.1:{port}/img{i}.jpg,image {i}\n")
        f.write(f"http://127.0.0.1:{port}/missing.jpg,gone\n")
        f.write(f"http://127.0.0.1:{port}/bad.jpg,bad\n")
    t=time.time()
    try:
        s = build_shards("/tmp/urls.csv", "/tmp/build_out", overwrite=True, image_size=32, threads=2, samples_per_shard=3, processes=1)
        print(s)
    except BuildFailed as e:
        print("FAILED", e, e.summary)
    print("time", time.time()-t, file=sys.stderr)
    srv.shutdown()
