/* llmroute's command line (DESIGN.md §5). */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "master.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: llmroute [-c FILE] [-t | -s reload|quit|stop|status | status] [-v]\n"
            "  -c FILE    configuration file (default conf/llmroute.conf)\n"
            "  -t         test the configuration and exit\n"
            "  -s SIGNAL  send reload, quit (graceful) or stop (fast) to the running master,\n"
            "             or print its status\n"
            "  status     print each deployment's live state from the shared segment\n"
            "  -d         debug logging\n"
            "  -v         print the version and exit\n");
}

static int test_config(const char *path)
{
    char err[1024];
    llmr_conf *conf = NULL;

    if (llmr_conf_load(path, &conf, err, sizeof(err)) < 0) {
        fprintf(stderr, "llmroute: %s\nllmroute: configuration file %s test failed\n",
                err, path);
        return 1;
    }
    fprintf(stderr, "llmroute: configuration file %s syntax is ok\n"
                    "llmroute: configuration file %s test is successful\n", path, path);
    llmr_conf_free(conf);
    return 0;
}

static int send_signal(const char *path, const char *name)
{
    static const struct { const char *name; int signo; } sigs[] = {
        { "reload", SIGHUP }, { "quit", SIGQUIT }, { "stop", SIGTERM },
    };
    char err[1024];
    llmr_conf *conf = NULL;
    FILE *f;
    int pid = 0, signo = 0;

    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        if (strcmp(name, sigs[i].name) == 0)
            signo = sigs[i].signo;
    if (signo == 0) {
        fprintf(stderr, "llmroute: unknown signal \"%s\" (reload, quit, stop, status)\n", name);
        return 1;
    }
    if (llmr_conf_load(path, &conf, err, sizeof(err)) < 0) {
        fprintf(stderr, "llmroute: %s\n", err);
        return 1;
    }
    f = fopen(conf->pid_file, "r");
    if (f == NULL || fscanf(f, "%d", &pid) != 1 || pid <= 0) {
        fprintf(stderr, "llmroute: cannot read pid file %s: %s\n", conf->pid_file,
                f == NULL ? strerror(errno) : "no pid in it");
        if (f != NULL)
            fclose(f);
        llmr_conf_free(conf);
        return 1;
    }
    fclose(f);
    llmr_conf_free(conf);
    if (kill(pid, signo) == -1) {
        fprintf(stderr, "llmroute: kill(%d, %s): %s\n", pid, name, strerror(errno));
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *conf = "conf/llmroute.conf", *sig = NULL;
    int opt, test = 0;

    while ((opt = getopt(argc, argv, "c:ts:dvh")) != -1) {
        switch (opt) {
        case 'c': conf = optarg; break;
        case 't': test = 1; break;
        case 's': sig = optarg; break;
        case 'd': llmr_log_level = LLMR_LOG_DEBUG; break;
        case 'v': printf("llmroute %s\n", LLMR_VERSION); return 0;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 1;
        }
    }
    if (optind < argc && strcmp(argv[optind], "status") == 0 && sig == NULL)
        sig = "status";
    else if (optind < argc) {
        usage(stderr);
        return 1;
    }
    if (test)
        return test_config(conf);
    if (sig != NULL && strcmp(sig, "status") == 0)
        return llmr_status_print(conf);
    if (sig != NULL)
        return send_signal(conf, sig);
    return llmr_master_run(conf);
}
