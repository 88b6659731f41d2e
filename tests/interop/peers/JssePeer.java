// An echo peer on the JDK's own TLS (JSSE) for the interop matrix, run as a child
// process and compiled at test time by tests/interop/stacks.py (javac, JDK only):
//
//   java JssePeer role=server|client version=1.2|1.3 cafile=PATH.pem
//        [keystore=PATH.p12] [port=N] [keylimit=BYTES]
//
// (keystore: the server's certificate and key as PKCS#12, password "interop".)
//
// The line protocol is stacks.LinePeer's: a server listens on 127.0.0.1 and prints
// "LISTENING <port>", a client connects to 127.0.0.1:<port>; "HANDSHAKE <version>"
// once the handshake is done, then every byte read is sent back. Commands on stdin:
// "S <hex>" sends, "Q" closes, "K" calls startHandshake(), which on an established
// TLS 1.3 connection makes JSSE send a KeyUpdate asking for ours (JSSE's only way to
// start one on demand); "k" and "R" are UNSUPPORTED. keylimit=N sets the *security*
// property jdk.tls.keyLimits (read once, when JSSE's ciphers are first loaded, so
// it must be set before any TLS use; a system property of that name is ignored):
// JSSE then sends a KeyUpdate by itself after N bytes under one key.
// The end is "CLOSED" (close_notify) or "ERROR <JSSE's own exception text>".

import java.io.BufferedReader;
import java.io.FileInputStream;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.security.KeyStore;
import java.security.Security;
import java.security.cert.CertificateFactory;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import javax.net.ssl.KeyManagerFactory;
import javax.net.ssl.SNIHostName;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLParameters;
import javax.net.ssl.SSLServerSocket;
import javax.net.ssl.SSLSocket;
import javax.net.ssl.TrustManagerFactory;

public class JssePeer {
    static final Object OUT = new Object();

    static void say(String line) {
        synchronized (OUT) {
            System.out.println(line);
            System.out.flush();
        }
    }

    static void fail(Throwable e) {
        say("ERROR " + e);
        System.exit(1);
    }

    static KeyStore load(String path) throws Exception {
        KeyStore ks = KeyStore.getInstance("PKCS12");
        try (InputStream in = new FileInputStream(path)) {
            ks.load(in, "interop".toCharArray());
        }
        return ks;
    }

    public static void main(String[] args) {
        Map<String, String> o = new HashMap<>();
        o.put("version", "1.3");
        for (String a : args) {
            int i = a.indexOf('=');
            o.put(a.substring(0, i), a.substring(i + 1));
        }
        if (o.containsKey("keylimit")) {
            String n = o.get("keylimit");
            Security.setProperty("jdk.tls.keyLimits",
                    "AES/GCM/NoPadding KeyUpdate " + n + ", ChaCha20-Poly1305 KeyUpdate " + n);
        }
        try {
            run(o);
        } catch (Throwable e) {
            fail(e);
        }
    }

    static void run(Map<String, String> o) throws Exception {
        String[] protocols = {o.get("version").equals("1.2") ? "TLSv1.2" : "TLSv1.3"};
        // The CA straight from its PEM file: a PKCS#12 file made by OpenSSL 3.0 would
        // need JSSE's own trust attribute on the certificate to be taken as an anchor.
        KeyStore trust = KeyStore.getInstance("PKCS12");
        trust.load(null, null);
        try (InputStream in = new FileInputStream(o.get("cafile"))) {
            trust.setCertificateEntry("ca",
                    CertificateFactory.getInstance("X.509").generateCertificate(in));
        }
        TrustManagerFactory tmf = TrustManagerFactory.getInstance("PKIX");
        tmf.init(trust);
        KeyManagerFactory kmf = null;
        if (o.containsKey("keystore")) {
            kmf = KeyManagerFactory.getInstance("PKIX");
            kmf.init(load(o.get("keystore")), "interop".toCharArray());
        }
        SSLContext ctx = SSLContext.getInstance("TLS");
        ctx.init(kmf == null ? null : kmf.getKeyManagers(), tmf.getTrustManagers(), null);

        InetAddress loopback = InetAddress.getByName("127.0.0.1");
        SSLSocket sock;
        if (o.get("role").equals("server")) {
            try (SSLServerSocket ln = (SSLServerSocket) ctx.getServerSocketFactory()
                    .createServerSocket(0, 1, loopback)) {
                ln.setEnabledProtocols(protocols);
                say("LISTENING " + ln.getLocalPort());
                sock = (SSLSocket) ln.accept();   // one connection, then no listener
            }
        } else {
            Socket raw = new Socket(loopback, Integer.parseInt(o.get("port")));
            // Layered on a socket to 127.0.0.1, named "localhost": SNI and host name
            // verification use the name, and no resolver is asked.
            sock = (SSLSocket) ctx.getSocketFactory().createSocket(raw, "localhost",
                    raw.getPort(), true);
            SSLParameters p = sock.getSSLParameters();
            p.setEndpointIdentificationAlgorithm("HTTPS");
            p.setServerNames(List.of(new SNIHostName("localhost")));
            sock.setSSLParameters(p);
            sock.setEnabledProtocols(protocols);
        }
        sock.setTcpNoDelay(true);
        sock.startHandshake();
        say("HANDSHAKE " + sock.getSession().getProtocol());

        final SSLSocket s = sock;
        final OutputStream out = s.getOutputStream();
        Thread commands = new Thread(() -> commands(s, out));
        commands.setDaemon(true);
        commands.start();

        InputStream in = s.getInputStream();
        byte[] buf = new byte[65536];
        while (true) {
            int n = in.read(buf);
            if (n < 0) {
                say("CLOSED");
                s.close();
                System.exit(0);
            }
            synchronized (out) {
                out.write(buf, 0, n);
                out.flush();
            }
        }
    }

    // Beside the echo loop, as the other peers do: the writes of both are
    // serialised on the output stream.
    static void commands(SSLSocket s, OutputStream out) {
        try {
            BufferedReader r = new BufferedReader(
                    new InputStreamReader(System.in, StandardCharsets.US_ASCII));
            String line;
            while ((line = r.readLine()) != null) {
                if (line.startsWith("S ")) {
                    byte[] data = hex(line.substring(2));
                    synchronized (out) {
                        out.write(data);
                        out.flush();
                    }
                    say("DONE S");
                } else if (line.equals("K")) {
                    synchronized (out) {
                        s.startHandshake();
                    }
                    say("DONE K");
                } else if (line.equals("Q")) {
                    s.close();
                    say("DONE Q");
                    System.exit(0);
                } else {
                    say("UNSUPPORTED " + line);
                }
            }
            System.exit(0);          // stdin closed: the harness is gone
        } catch (Throwable e) {
            fail(e);
        }
    }

    static byte[] hex(String s) {
        byte[] b = new byte[s.length() / 2];
        for (int i = 0; i < b.length; i++) {
            b[i] = (byte) Integer.parseInt(s.substring(2 * i, 2 * i + 2), 16);
        }
        return b;
    }
}
