/* buildprint's read tracer (docs/discovered.md): an LD_PRELOAD library that logs, one line a
 * file, what each process of a build opens, to $BUILDPRINT_TRACE_DIR/trace.<pid>:
 *   R path   opened for reading (folders aside)     W path   opened for writing or created
 *   X path   the program that started               L path   a library it had mapped at exit
 *   N path   looked for to read, and not there (ENOENT)
 * Relative paths are made absolute (the working folder, or the folder fd of openat). errno
 * is kept as the call left it; nothing is logged without $BUILDPRINT_TRACE_DIR. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

static int log_fd = -1;

static int (*next_open)(const char *, int, ...);
static int (*next_openat)(int, const char *, int, ...);
static FILE *(*next_fopen)(const char *, const char *);

#define NEXT(var, name) \
    do { if (!var) var = dlsym(RTLD_NEXT, name); } while (0)

static void emit(char kind, const char *path) {
    char line[PATH_MAX + 8];
    int n = snprintf(line, sizeof line, "%c\t%s\n", kind, path);
    if (n > 0 && n < (int)sizeof line) {
        ssize_t ignored = write(log_fd, line, (size_t)n);
        (void)ignored;
    }
}

static void note(int dirfd, const char *path, int flags, int fd) {
    if (log_fd < 0 || path == NULL) return;
    int saved = errno;
    int writes = flags & (O_WRONLY | O_RDWR | O_CREAT | O_TRUNC | O_APPEND);
    char kind = writes ? 'W' : 'R';
    if (fd < 0) {  /* a file looked for and not there (a header earlier on a search path) */
        if (writes || saved != ENOENT) return;
        kind = 'N';
    }
    struct stat st;  /* a folder opened (to list, to remove a tree) is not read */
    if (kind == 'R' && ((flags & O_DIRECTORY) || (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)))) {
        errno = saved;
        return;
    }
    char full[PATH_MAX];
    if (path[0] == '/') {
        emit(kind, path);
    } else {
        char base[PATH_MAX];
        ssize_t len = -1;
        if (dirfd == AT_FDCWD) {
            len = getcwd(base, sizeof base) ? (ssize_t)strlen(base) : -1;
        } else {
            char link[64];
            snprintf(link, sizeof link, "/proc/self/fd/%d", dirfd);
            len = readlink(link, base, sizeof base - 1);
            if (len >= 0) base[len] = 0;
        }
        if (len >= 0 && snprintf(full, sizeof full, "%s/%s", base, path) < (int)sizeof full)
            emit(kind, full);
    }
    errno = saved;
}

static int mode_of(int flags, va_list args) {
    return (flags & (O_CREAT | O_TMPFILE)) ? va_arg(args, int) : 0;
}

int open(const char *path, int flags, ...) {
    va_list args; va_start(args, flags); int mode = mode_of(flags, args); va_end(args);
    NEXT(next_open, "open");
    int fd = next_open(path, flags, mode);
    note(AT_FDCWD, path, flags, fd);
    return fd;
}
int open64(const char *path, int flags, ...) {
    va_list args; va_start(args, flags); int mode = mode_of(flags, args); va_end(args);
    return open(path, flags, mode);
}
int __open_2(const char *path, int flags) { return open(path, flags); }
int __open64_2(const char *path, int flags) { return open(path, flags); }
int openat(int dirfd, const char *path, int flags, ...) {
    va_list args; va_start(args, flags); int mode = mode_of(flags, args); va_end(args);
    NEXT(next_openat, "openat");
    int fd = next_openat(dirfd, path, flags, mode);
    note(dirfd, path, flags, fd);
    return fd;
}
int openat64(int dirfd, const char *path, int flags, ...) {
    va_list args; va_start(args, flags); int mode = mode_of(flags, args); va_end(args);
    return openat(dirfd, path, flags, mode);
}
int __openat_2(int dirfd, const char *path, int flags) { return openat(dirfd, path, flags); }
int __openat64_2(int dirfd, const char *path, int flags) { return openat(dirfd, path, flags); }
int creat(const char *path, mode_t mode) { return open(path, O_CREAT | O_WRONLY | O_TRUNC, mode); }
int creat64(const char *path, mode_t mode) { return open(path, O_CREAT | O_WRONLY | O_TRUNC, mode); }

static FILE *fopened(const char *path, const char *mode, FILE *file) {
    int writes = strchr(mode, 'w') || strchr(mode, 'a') || strchr(mode, '+');
    note(AT_FDCWD, path, writes ? O_WRONLY : O_RDONLY, file != NULL ? fileno(file) : -1);
    return file;
}
FILE *fopen(const char *path, const char *mode) {
    NEXT(next_fopen, "fopen");
    return fopened(path, mode, next_fopen(path, mode));
}
FILE *fopen64(const char *path, const char *mode) { return fopen(path, mode); }

/* Each program that starts names itself; each that ends names the libraries it mapped. */
__attribute__((constructor)) static void start(void) {
    const char *folder = getenv("BUILDPRINT_TRACE_DIR");
    if (folder == NULL || folder[0] != '/') return;
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/trace.%d", folder, (int)getpid());
    NEXT(next_open, "open");
    int saved = errno;
    log_fd = next_open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    char exe[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (log_fd >= 0 && len > 0) { exe[len] = 0; emit('X', exe); }
    errno = saved;
}

__attribute__((destructor)) static void stop(void) {
    if (log_fd < 0) return;
    int saved = errno;
    FILE *maps = next_fopen ? next_fopen("/proc/self/maps", "r") : NULL;
    if (maps == NULL) { NEXT(next_fopen, "fopen"); maps = next_fopen("/proc/self/maps", "r"); }
    if (maps != NULL) {
        char line[PATH_MAX + 128];
        while (fgets(line, sizeof line, maps)) {
            char *path = strchr(line, '/');
            if (path == NULL || strstr(path, ".so") == NULL) continue;
            path[strcspn(path, "\n")] = 0;
            emit('L', path);
        }
        fclose(maps);
    }
    errno = saved;
}
