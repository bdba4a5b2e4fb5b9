import threading
import unittest
import urllib.request

from pricing.server import serve


class ServerTest(unittest.TestCase):
    def test_health_answers_ok(self):
        server = serve(0, quiet=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            url = f"http://127.0.0.1:{server.server_port}/health"
            with urllib.request.urlopen(url, timeout=10) as r:
                self.assertEqual(r.read(), b"ok\n")
        finally:
            server.shutdown()
            server.server_close()


if __name__ == "__main__":
    unittest.main()
