package kgraft;

import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Map;
import java.util.concurrent.CountDownLatch;

import org.neo4j.configuration.GraphDatabaseInternalSettings;
import org.neo4j.configuration.GraphDatabaseSettings;
import org.neo4j.configuration.connectors.BoltConnector;
import org.neo4j.configuration.connectors.BoltConnectorInternalSettings;
import org.neo4j.configuration.helpers.SocketAddress;
import org.neo4j.dbms.api.DatabaseManagementService;
import org.neo4j.dbms.api.DatabaseManagementServiceBuilder;
import org.neo4j.graphdb.GraphDatabaseService;
import org.neo4j.io.ByteUnit;
import org.neo4j.logging.Level;
import org.neo4j.logging.log4j.Log4jLogProvider;

/**
 * Throwaway Neo4j Community server for kgraft's tests.
 *
 * <p>Embedded DBMS with the Bolt connector on 127.0.0.1 and authentication ON. The password of
 * user {@code neo4j} is set (change not required) through the system database before the ready
 * line is printed, so a client never sees the default {@code neo4j/neo4j} credentials.
 *
 * <p>Configuration comes from the environment (the password is not put on the command line):
 * <ul>
 *   <li>{@code KGRAFT_NEO4J_HOME} - Neo4j home (data/ and logs/ go under it), default {@code .neo4j}</li>
 *   <li>{@code NEO4J_PORT} - Bolt port, default 7687</li>
 *   <li>{@code NEO4J_PASSWORD} - password for user neo4j, default {@code kgraft-test-pw} (min. 8 chars)</li>
 *   <li>{@code KGRAFT_NEO4J_PAGECACHE_MB} - page cache size, default 128</li>
 * </ul>
 *
 * <p>Prints {@code NEO4J READY bolt://127.0.0.1:PORT} once Bolt accepts connections; on failure it
 * prints {@code NEO4J FAILED: ...} and exits 1. SIGTERM/SIGINT shut the DBMS down cleanly.
 */
public final class Neo4jServer {
    private static final String HOST = "127.0.0.1";

    private Neo4jServer() {}

    private static String env(String name, String fallback) {
        String value = System.getenv(name);
        return value == null || value.isEmpty() ? fallback : value;
    }

    private static void fail(String message) {
        System.out.println("NEO4J FAILED: " + message);
        System.out.flush();
        System.exit(1);
    }

    public static void main(String[] args) {
        Path home = Path.of(env("KGRAFT_NEO4J_HOME", ".neo4j")).toAbsolutePath().normalize();
        String password = env("NEO4J_PASSWORD", "kgraft-test-pw");
        int port = 0;
        long pageCacheMb = 0;
        try {
            port = Integer.parseInt(env("NEO4J_PORT", "7687"));
            pageCacheMb = Long.parseLong(env("KGRAFT_NEO4J_PAGECACHE_MB", "128"));
        } catch (NumberFormatException e) {
            fail("NEO4J_PORT / KGRAFT_NEO4J_PAGECACHE_MB must be integers: " + e.getMessage());
        }
        if (password.length() < 8) {
            fail("NEO4J_PASSWORD must be at least 8 characters (Neo4j's default minimum)");
        }

        DatabaseManagementService dbms = null;
        try {
            dbms = new DatabaseManagementServiceBuilder(home)
                    .setUserLogProvider(new Log4jLogProvider(System.out, Level.INFO))
                    .setConfig(BoltConnector.enabled, true)
                    .setConfig(BoltConnector.listen_address, new SocketAddress(HOST, port))
                    .setConfig(BoltConnector.advertised_address, new SocketAddress(HOST, port))
                    .setConfig(BoltConnector.encryption_level, BoltConnector.EncryptionLevel.DISABLED)
                    .setConfig(GraphDatabaseSettings.auth_enabled, true)
                    .setConfig(GraphDatabaseSettings.pagecache_memory, ByteUnit.mebiBytes(pageCacheMb))
                    .setConfig(GraphDatabaseSettings.udc_enabled, false)
                    // Test server: don't linger for seconds in Bolt's graceful shutdown (default ~10 s).
                    .setConfig(BoltConnectorInternalSettings.connection_shutdown_wait_time, Duration.ofMillis(500))
                    .setConfig(GraphDatabaseInternalSettings.netty_server_shutdown_quiet_period, 0)
                    .setConfig(GraphDatabaseInternalSettings.netty_server_shutdown_timeout, Duration.ofSeconds(2))
                    .build();
        } catch (Throwable t) {
            t.printStackTrace(System.out);
            fail("could not start Neo4j on " + HOST + ":" + port + ": " + rootCause(t));
        }

        final DatabaseManagementService service = dbms;
        final CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            System.out.println("NEO4J STOPPING");
            System.out.flush();
            try {
                service.shutdown();
            } finally {
                System.out.println("NEO4J STOPPED");
                System.out.flush();
                stopped.countDown();
            }
        }, "kgraft-neo4j-shutdown"));

        try {
            // Embedded transactions run with full privileges, so this works with auth enabled.
            GraphDatabaseService system = service.database(GraphDatabaseSettings.SYSTEM_DATABASE_NAME);
            system.executeTransactionally(
                    "ALTER USER neo4j SET PASSWORD $pw CHANGE NOT REQUIRED", Map.of("pw", password));
            // The default database must be online too.
            service.database(GraphDatabaseSettings.DEFAULT_DATABASE_NAME).executeTransactionally("RETURN 1");
        } catch (Throwable t) {
            t.printStackTrace(System.out);
            fail("could not set the password of user neo4j: " + rootCause(t));
        }

        try (Socket socket = new Socket()) {
            socket.connect(new InetSocketAddress(HOST, port), 5000);
        } catch (IOException e) {
            fail("Bolt is not listening on " + HOST + ":" + port + ": " + e);
        }

        System.out.println("NEO4J READY bolt://" + HOST + ":" + port);
        System.out.flush();

        try {
            stopped.await(); // never counted down before the JVM begins exiting
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    private static String rootCause(Throwable t) {
        Throwable cause = t;
        while (cause.getCause() != null && cause.getCause() != cause) {
            cause = cause.getCause();
        }
        return cause.getClass().getSimpleName() + ": " + cause.getMessage();
    }
}
