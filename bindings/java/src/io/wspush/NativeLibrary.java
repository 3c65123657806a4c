package io.wspush;

import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.nio.file.attribute.PosixFilePermissions;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;
import java.util.Locale;
import java.util.Properties;

/**
 * Finds and loads {@code libwspush_jni}, in this order:
 *
 * <ol>
 *   <li>the file named by the system property {@code wspush.library}, if set;
 *   <li>the library this jar carries for the running platform ({@code os.name}/{@code os.arch},
 *       e.g. {@code linux-x86_64}), at {@code io/wspush/native/PLATFORM/}, listed with its
 *       size and SHA-256 in {@code io/wspush/native/index.properties}: extracted once into a
 *       cache directory and loaded from there;
 *   <li>{@code libwspush_jni} by name from {@code java.library.path}.
 * </ol>
 *
 * <p>The cache directory is {@code wspush.cache.dir} if set, else
 * {@code $XDG_CACHE_HOME/wspush} or {@code ~/.cache/wspush}, and in it
 * {@code VERSION/PLATFORM-HASH/}: the name holds the version and the start of the library's
 * SHA-256, so two versions, or two builds of one version, never share a file. A library
 * already there is used only if its size and SHA-256 are the expected ones (else it is
 * extracted again). Extraction writes a temporary file in the same directory, checks its size
 * and hash, forces it to disk, and renames it into place atomically: processes extracting at
 * once each rename a complete, identical file, and none ever loads a partial one. When the
 * cache directory cannot be written, the library goes to a new private temporary directory
 * instead, deleted when the JVM exits.
 */
final class NativeLibrary {
    /** Where the libraries and their index live in the jar. */
    private static final String ROOT = "io/wspush/native/";
    /** The library's base name ({@code libwspush_jni.so} on Linux). */
    private static final String NAME = "wspush_jni";
    /** Hex digits of the SHA-256 in the cache directory's name. */
    private static final int HASH_PREFIX = 16;

    private NativeLibrary() {}

    /**
     * Loads the library.
     *
     * @return {@code null} once loaded, else why it could not be (for the
     *     {@link UnsatisfiedLinkError} every native call then throws)
     */
    static String load() {
        String override = System.getProperty("wspush.library");
        if (override != null && !override.isEmpty()) {
            try {
                System.load(override);
                return null;
            } catch (UnsatisfiedLinkError | SecurityException e) {
                return "cannot load the wspush native library from -Dwspush.library=" + override + ": "
                        + e.getMessage();
            }
        }
        String platform = platform();
        Properties index = index();
        String file = index.getProperty(platform + ".file");
        if (file != null) {
            Path extracted = null;
            try {
                extracted = extract(platform, file, index);
                System.load(extracted.toString());
                return null;
            } catch (IOException | RuntimeException | UnsatisfiedLinkError e) {
                return "cannot load the wspush native library bundled for " + platform
                        + (extracted == null ? "" : " (extracted to " + extracted + ")") + ": " + e
                        + "; set -Dwspush.library=/path/to/" + System.mapLibraryName(NAME)
                        + " to use another";
            }
        }
        try {
            System.loadLibrary(NAME);
            return null;
        } catch (UnsatisfiedLinkError | SecurityException e) {
            String bundled = index.getProperty("platforms", "").trim();
            return "cannot load the wspush native library: this jar has none for os.name="
                    + System.getProperty("os.name") + ", os.arch=" + System.getProperty("os.arch")
                    + " (platform " + platform + "; it carries: "
                    + (bundled.isEmpty() ? "none" : bundled) + "), and " + System.mapLibraryName(NAME)
                    + " is not on java.library.path (" + System.getProperty("java.library.path")
                    + "): build the jar on this platform with bindings/java/build.sh, or set"
                    + " -Dwspush.library=/path/to/" + System.mapLibraryName(NAME);
        }
    }

    /** The running platform as the jar names it: {@code linux-x86_64}, {@code macos-aarch64}. */
    static String platform() {
        String os = System.getProperty("os.name", "unknown").toLowerCase(Locale.ROOT);
        if (os.startsWith("linux")) {
            os = "linux";
        } else if (os.startsWith("mac") || os.startsWith("darwin")) {
            os = "macos";
        } else if (os.startsWith("windows")) {
            os = "windows";
        } else {
            os = os.replaceAll("[^a-z0-9]", "");
        }
        String arch = System.getProperty("os.arch", "unknown").toLowerCase(Locale.ROOT);
        switch (arch) {
            case "amd64", "x86_64", "x64" -> arch = "x86_64";
            case "aarch64", "arm64" -> arch = "aarch64";
            case "x86", "i386", "i486", "i586", "i686" -> arch = "x86";
            default -> arch = arch.replaceAll("[^a-z0-9_]", "");
        }
        return os + "-" + arch;
    }

    /** The jar's {@code index.properties}; empty when the classes run without one. */
    private static Properties index() {
        Properties index = new Properties();
        try (InputStream in = NativeLibrary.class.getClassLoader().getResourceAsStream(ROOT + "index.properties")) {
            if (in != null) {
                index.load(in);
            }
        } catch (IOException e) {
            // No index: as if the jar carried no library (java.library.path is tried next).
        }
        return index;
    }

    /** The bundled library for {@code platform}, extracted (or found intact) in the cache. */
    private static Path extract(String platform, String file, Properties index) throws IOException {
        String sha256 = required(index, platform + ".sha256").toLowerCase(Locale.ROOT);
        long size = Long.parseLong(required(index, platform + ".size"));
        if (sha256.length() != 64) {
            throw new IOException("index.properties: " + platform + ".sha256 is not a SHA-256");
        }
        String version = required(index, "version");
        String subdirectory = platform + "-" + sha256.substring(0, HASH_PREFIX);
        String name = System.mapLibraryName(NAME);
        Path directory;
        try {
            directory = cacheRoot().resolve(version).resolve(subdirectory);
            Files.createDirectories(directory);
        } catch (IOException | SecurityException | UnsupportedOperationException e) {
            // Not writable (a read-only home, a sandbox): a directory of our own for this run.
            directory = Files.createTempDirectory("wspush-native-");
            directory.toFile().deleteOnExit();
            directory.resolve(name).toFile().deleteOnExit();
        }
        Path target = directory.resolve(name);
        if (Files.isRegularFile(target) && Files.size(target) == size && sha256.equals(hash(target))) {
            return target;
        }
        Path partial = Files.createTempFile(directory, name + ".", ".partial");
        try {
            MessageDigest digest = sha256();
            long written = 0;
            try (InputStream in = NativeLibrary.class.getClassLoader().getResourceAsStream(ROOT + file);
                    FileChannel out = FileChannel.open(partial, StandardOpenOption.WRITE)) {
                if (in == null) {
                    throw new IOException("the jar lists " + ROOT + file + " but does not hold it");
                }
                byte[] buffer = new byte[1 << 16];
                for (int n; (n = in.read(buffer)) > 0; written += n) {
                    digest.update(buffer, 0, n);
                    ByteBuffer chunk = ByteBuffer.wrap(buffer, 0, n);
                    while (chunk.hasRemaining()) {
                        out.write(chunk);
                    }
                }
                out.force(true);
            }
            String actual = HexFormat.of().formatHex(digest.digest());
            if (written != size || !actual.equals(sha256)) {
                throw new IOException("the library in the jar is damaged: " + written + " bytes with SHA-256 "
                        + actual + ", expected " + size + " bytes with " + sha256);
            }
            readableByAll(partial);
            Files.move(partial, target, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
            syncDirectory(directory);
        } finally {
            Files.deleteIfExists(partial);
        }
        return target;
    }

    /** {@code wspush.cache.dir}, else {@code $XDG_CACHE_HOME/wspush}, else {@code ~/.cache/wspush}. */
    private static Path cacheRoot() {
        String configured = System.getProperty("wspush.cache.dir");
        if (configured != null && !configured.isEmpty()) {
            return Path.of(configured);
        }
        String xdg = System.getenv("XDG_CACHE_HOME");
        if (xdg != null && Path.of(xdg).isAbsolute()) {
            return Path.of(xdg, "wspush");
        }
        return Path.of(System.getProperty("user.home"), ".cache", "wspush");
    }

    private static String required(Properties index, String key) throws IOException {
        String value = index.getProperty(key);
        if (value == null || value.isBlank()) {
            throw new IOException("index.properties has no " + key);
        }
        return value.trim();
    }

    private static String hash(Path file) throws IOException {
        MessageDigest digest = sha256();
        byte[] buffer = new byte[1 << 16];
        try (InputStream in = Files.newInputStream(file)) {
            for (int n; (n = in.read(buffer)) > 0; ) {
                digest.update(buffer, 0, n);
            }
        }
        return HexFormat.of().formatHex(digest.digest());
    }

    private static MessageDigest sha256() {
        try {
            return MessageDigest.getInstance("SHA-256");
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException("every JVM has SHA-256", e);
        }
    }

    /** rw-r--r--: a cache directory shared by several users lets each check the file. */
    private static void readableByAll(Path file) throws IOException {
        try {
            Files.setPosixFilePermissions(file, PosixFilePermissions.fromString("rw-r--r--"));
        } catch (UnsupportedOperationException e) {
            // Not POSIX: the platform's defaults.
        }
    }

    /** Makes the rename durable; where a directory cannot be opened (not POSIX) it is skipped. */
    private static void syncDirectory(Path directory) {
        try (FileChannel channel = FileChannel.open(directory, StandardOpenOption.READ)) {
            channel.force(true);
        } catch (IOException | UnsupportedOperationException e) {
            // The file itself was forced; only the rename's durability is at stake.
        }
    }
}
