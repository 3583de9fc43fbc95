/* A reference for bench/bench_proxy.py: the least a relay can do that checks every byte of a blob
 * against its digest, as regauth's proxy must (#10), written in C so that no interpreter cost is in it.
 *
 * One thread per client connection. Each request is forwarded as it came to one upstream (plain HTTP
 * on loopback) over a fresh connection; the response head is passed back as it came; the body is
 * received into one 1 MiB buffer, hashed with OpenSSL's SHA-256 (the SHA instructions where the CPU
 * has them) and sent on. For a /blobs/sha256:<hex> GET the last buffer is held back until the digest
 * is checked, and a mismatch cuts the connection, as regauth does. With --spool DIR every buffer is
 * also written to an unlinked file in DIR: what one fetch per blob needs for pulls that join later.
 * Nothing else: no parsing beyond the Content-Length, no pooling, no error pages.
 *
 * Build: cc -O2 -o verifying-relay verifying_relay.c -lcrypto -lpthread
 * Run:   verifying-relay LISTEN_PORT UPSTREAM_PORT [--spool DIR]
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUFFER (1 << 20)
#define HEAD_MAX 16384

static int upstream_port;
static const char *spool_dir;

static int send_all(int fd, const char *data, size_t size) {
    while (size > 0) {
        ssize_t sent = send(fd, data, size, MSG_NOSIGNAL);
        if (sent <= 0) return -1;
        data += sent;
        size -= (size_t)sent;
    }
    return 0;
}

/* Read until the blank line that ends a head; returns the bytes read (head and what followed), or -1. */
static ssize_t read_head(int fd, char *head, size_t cap, size_t *head_len) {
    size_t got = 0;
    for (;;) {
        ssize_t n = recv(fd, head + got, cap - 1 - got, 0);
        if (n <= 0) return -1;
        got += (size_t)n;
        head[got] = 0;
        char *end = strstr(head, "\r\n\r\n");
        if (end != NULL) {
            *head_len = (size_t)(end + 4 - head);
            return (ssize_t)got;
        }
        if (got >= cap - 1) return -1;
    }
}

static int connect_upstream(void) {
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)upstream_port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
        if (fd >= 0) close(fd);
        return -1;
    }
    return fd;
}

/* The expected digest's 32 bytes when the request line is a GET of /blobs/sha256:<hex>. */
static int wanted_digest(const char *request, unsigned char out[32]) {
    const char *at = strstr(request, "/blobs/sha256:");
    const char *line_end = strstr(request, "\r\n");
    if (strncmp(request, "GET ", 4) != 0 || at == NULL || line_end == NULL || at > line_end) return 0;
    at += strlen("/blobs/sha256:");
    for (int i = 0; i < 32; i++) {
        unsigned int byte;
        if (sscanf(at + 2 * i, "%2x", &byte) != 1) return 0;
        out[i] = (unsigned char)byte;
    }
    return 1;
}

/* One request: 0 when the client connection may carry another, -1 when it must close. */
static int relay_one(int client, char *buffer, int spool) {
    char request[HEAD_MAX], head[HEAD_MAX];
    size_t request_len, head_len;
    if (read_head(client, request, sizeof request, &request_len) < 0) return -1;
    unsigned char want[32];
    int verify = wanted_digest(request, want);
    int upstream = connect_upstream();
    if (upstream < 0) return -1;
    ssize_t got = -1;
    if (send_all(upstream, request, request_len) == 0)
        got = read_head(upstream, head, sizeof head, &head_len);
    char *length_at = got < 0 ? NULL : strcasestr(head, "\r\ncontent-length:");
    if (length_at == NULL || length_at > head + head_len) {
        close(upstream);
        return -1;
    }
    long long remaining = atoll(length_at + strlen("\r\ncontent-length:"));
    int ok = send_all(client, head, head_len) == 0;
    EVP_MD_CTX *hash = EVP_MD_CTX_new();
    EVP_DigestInit_ex(hash, EVP_sha256(), NULL);
    /* What came with the head is the first part of the body. */
    size_t held = (size_t)got - head_len;
    memcpy(buffer, head + head_len, held);
    remaining -= (long long)held;
    while (ok && (remaining > 0 || held > 0)) {
        if (held == 0) {
            ssize_t n = recv(upstream, buffer, remaining < BUFFER ? (size_t)remaining : BUFFER, 0);
            if (n <= 0) {
                ok = 0;
                break;
            }
            held = (size_t)n;
            remaining -= n;
        }
        EVP_DigestUpdate(hash, buffer, held);
        if (spool >= 0 && write(spool, buffer, held) != (ssize_t)held) ok = 0;
        if (remaining == 0 && verify) {
            unsigned char digest[32];
            unsigned int size;
            EVP_DigestFinal_ex(hash, digest, &size);
            if (memcmp(digest, want, 32) != 0) ok = 0; /* the last buffer never goes out */
        }
        if (ok) ok = send_all(client, buffer, held) == 0;
        held = 0;
    }
    EVP_MD_CTX_free(hash);
    close(upstream);
    return ok ? 0 : -1;
}

static void *serve(void *arg) {
    int client = (int)(long)arg;
    char *buffer = malloc(BUFFER);
    int spool = -1;
    if (spool_dir != NULL) {
        char path[4096];
        snprintf(path, sizeof path, "%s/spool-XXXXXX", spool_dir);
        spool = mkstemp(path);
        if (spool >= 0) unlink(path);
    }
    while (buffer != NULL && relay_one(client, buffer, spool) == 0) {
        if (spool >= 0 && ftruncate(spool, 0) == 0) lseek(spool, 0, SEEK_SET);
    }
    if (spool >= 0) close(spool);
    free(buffer);
    close(client);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 3 && !(argc == 5 && strcmp(argv[3], "--spool") == 0)) {
        fprintf(stderr, "usage: %s LISTEN_PORT UPSTREAM_PORT [--spool DIR]\n", argv[0]);
        return 2;
    }
    upstream_port = atoi(argv[2]);
    spool_dir = argc == 5 ? argv[4] : NULL;
    int listener = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1]))};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(listener, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(listener, 64) != 0) {
        perror("verifying-relay");
        return 1;
    }
    for (;;) {
        int client = accept(listener, NULL, NULL);
        if (client < 0) continue;
        pthread_t thread;
        if (pthread_create(&thread, NULL, serve, (void *)(long)client) != 0) {
            close(client);
            continue;
        }
        pthread_detach(thread);
    }
}
