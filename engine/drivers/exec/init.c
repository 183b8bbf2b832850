/* skiff-init: the --init process (docker-init / tini's job, minimal).
 *
 * pid 1 in a pid namespace ignores signals it has no handler for and inherits every orphan:
 * this init forwards the signals it receives to its one child, reaps every zombie, and exits
 * with the child's status (128+signal when the child was killed). Built static at runtime
 * (gcc -static) so that it runs in any image.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    int first = 1;
    if (argc > 1 && strcmp(argv[1], "--") == 0)
        first = 2;
    if (first >= argc) {
        fprintf(stderr, "skiff-init: no command given\n");
        return 1;
    }
    sigset_t all, old;
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, &old);
    pid_t child = fork();
    if (child < 0) {
        perror("skiff-init: fork");
        return 1;
    }
    if (child == 0) {
        sigprocmask(SIG_SETMASK, &old, NULL);
        execvp(argv[first], argv + first);
        fprintf(stderr, "skiff-init: exec %s failed: %s\n", argv[first], strerror(errno));
        _exit(errno == ENOENT ? 127 : 126);
    }
    for (;;) {
        siginfo_t si;
        struct timespec ts = {1, 0};
        int sig = sigtimedwait(&all, &si, &ts);
        if (sig > 0 && sig != SIGCHLD)
            kill(child, sig);
        for (;;) {
            int status;
            pid_t p = waitpid(-1, &status, WNOHANG);
            if (p <= 0)
                break;
            if (p == child) {
                /* reap what is left, then leave with the child's status */
                while (waitpid(-1, NULL, WNOHANG) > 0)
                    ;
                if (WIFEXITED(status))
                    return WEXITSTATUS(status);
                if (WIFSIGNALED(status))
                    return 128 + WTERMSIG(status);
                return 255;
            }
        }
    }
}
