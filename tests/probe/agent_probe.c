/* agent_probe: what `ssh-add -l` asks an SSH agent, for a busybox image that has no
 * ssh-add. Built static by the ssh tests. Connects to $SSH_AUTH_SOCK and prints, one per
 * line: "keys N", then "key <base64 of the public key blob> <comment>" for each identity
 * (the form of a .pub file's middle field), then, when there is a key, "sign ok" if the
 * agent signs data with the first one, then "remove refused" if the agent refuses to
 * remove all keys (a read-only agent does; OpenSSH's own would obey) and "keys N" again.
 * Exits 2 when it cannot talk to the agent. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static int fd;

static void die(const char *what) {
    printf("error %s\n", what);
    exit(2);
}

static void put32(unsigned char *p, uint32_t v) {
    p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = v;
}

static uint32_t get32(const unsigned char *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static void xfer(const void *buf, size_t n, int writing) {
    size_t done = 0;
    while (done < n) {
        ssize_t r = writing ? write(fd, (const char *)buf + done, n - done)
                            : read(fd, (char *)buf + done, n - done);
        if (r <= 0) die(writing ? "write" : "read");
        done += r;
    }
}

/* Sends one message, returns the reply (type byte first) and its length. */
static unsigned char *ask(const unsigned char *body, uint32_t len, uint32_t *out_len) {
    unsigned char hdr[4];
    put32(hdr, len);
    xfer(hdr, 4, 1);
    xfer(body, len, 1);
    xfer(hdr, 4, 0);
    *out_len = get32(hdr);
    if (*out_len == 0 || *out_len > 256 * 1024) die("reply length");
    unsigned char *reply = malloc(*out_len);
    if (!reply) die("malloc");
    xfer(reply, *out_len, 0);
    return reply;
}

static void base64(const unsigned char *in, uint32_t n) {
    static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (uint32_t i = 0; i < n; i += 3) {
        uint32_t v = in[i] << 16 | (i + 1 < n ? in[i + 1] << 8 : 0) | (i + 2 < n ? in[i + 2] : 0);
        putchar(t[v >> 18 & 63]);
        putchar(t[v >> 12 & 63]);
        putchar(i + 1 < n ? t[v >> 6 & 63] : '=');
        putchar(i + 2 < n ? t[v & 63] : '=');
    }
}

int main(void) {
    const char *path = getenv("SSH_AUTH_SOCK");
    if (!path) die("SSH_AUTH_SOCK unset");
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof addr.sun_path) die("path too long");
    strcpy(addr.sun_path, path);
    fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) die("connect");

    unsigned char list = 11; /* SSH_AGENTC_REQUEST_IDENTITIES */
    uint32_t n;
    unsigned char *r = ask(&list, 1, &n);
    if (r[0] != 12 || n < 5) die("identities answer");
    uint32_t keys = get32(r + 1), off = 5;
    printf("keys %u\n", keys);
    const unsigned char *first = NULL;
    uint32_t first_len = 0;
    for (uint32_t k = 0; k < keys; k++) {
        if (off + 4 > n) die("short answer");
        uint32_t blob_len = get32(r + off);
        const unsigned char *blob = r + off + 4;
        off += 4 + blob_len;
        if (off + 4 > n) die("short answer");
        uint32_t c_len = get32(r + off);
        const unsigned char *comment = r + off + 4;
        off += 4 + c_len;
        if (off > n) die("short answer");
        if (!first) { first = blob; first_len = blob_len; }
        printf("key ");
        base64(blob, blob_len);
        printf(" %.*s\n", (int)c_len, comment);
    }
    if (first) {
        /* SSH_AGENTC_SIGN_REQUEST: string key blob, string data, uint32 flags */
        const char data[] = "rbuild";
        uint32_t len = 1 + 4 + first_len + 4 + (sizeof data - 1) + 4;
        unsigned char *req = malloc(len), *p = req;
        *p++ = 13;
        put32(p, first_len); p += 4;
        memcpy(p, first, first_len); p += first_len;
        put32(p, sizeof data - 1); p += 4;
        memcpy(p, data, sizeof data - 1); p += sizeof data - 1;
        put32(p, 0);
        uint32_t sn;
        unsigned char *s = ask(req, len, &sn);
        printf(s[0] == 14 ? "sign ok\n" : "sign failed %u\n", s[0]);
        /* SSH_AGENTC_REMOVE_ALL_IDENTITIES */
        unsigned char remove_all = 19;
        unsigned char *a = ask(&remove_all, 1, &sn);
        printf(a[0] == 5 ? "remove refused\n" : "remove answered %u\n", a[0]);
        unsigned char *again = ask(&list, 1, &sn);
        if (again[0] != 12 || sn < 5) die("identities answer");
        printf("keys %u\n", get32(again + 1));
    }
    return 0;
}
