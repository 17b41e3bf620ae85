/* zotune plot: the loss curves of a run as an SVG drawn here (no plotting
 * dependency): the training loss (probe mean, smoothed) and the held-out
 * loss against the step. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

struct series {
  double *x, *y;
  size_t n, cap;
};

static int push(struct series *s, double x, double y)
{
  if (s->n == s->cap) {
    size_t cap = s->cap ? 2 * s->cap : 256;
    double *nx = realloc(s->x, cap * sizeof *nx);
    if (!nx)
      return -1;
    s->x = nx;
    double *ny = realloc(s->y, cap * sizeof *ny);
    if (!ny)
      return -1;
    s->y = ny;
    s->cap = cap;
  }
  s->x[s->n] = x;
  s->y[s->n++] = y;
  return 0;
}

/* A "nice" tick step for a range: 1, 2 or 5 times a power of ten. */
static double tick_step(double range, int want)
{
  double raw = range / want, p = pow(10.0, floor(log10(raw))), f = raw / p;
  return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * p;
}

static void polyline(FILE *f, const struct series *s, double x0, double x1, double y0, double y1,
                     const char *color, double width)
{
  const double L = 70, R = 760, Tp = 40, B = 400;
  if (!s->n)
    return;
  fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"%.1f\" points=\"", color, width);
  for (size_t i = 0; i < s->n; i++) {
    double px = L + (s->x[i] - x0) / (x1 - x0) * (R - L);
    double py = B - (s->y[i] - y0) / (y1 - y0) * (B - Tp);
    fprintf(f, "%.1f,%.1f ", px, py);
  }
  fprintf(f, "\"/>\n");
}

static const char *const plot_help =
    "usage: zotune plot --run DIR [--run DIR2 ...] [--title TEXT] -o OUT.svg\n"
    "\n"
    "One run: draws its training loss (mean of the two probes, smoothed) and held-out\n"
    "loss (when the run evaluated) against the step, from DIR/metrics.jsonl, as an SVG.\n"
    "Several runs (up to 12): one curve each, labelled by the run's folder name: the\n"
    "held-out loss where the run evaluated, else the smoothed training loss.\n";

#define MAX_RUNS 12

struct run_curves {
  struct series tr, ev;
};

/* Reads DIR/metrics.jsonl into the smoothed training curve and the held-out
 * curve; returns 0, or 1 after an error message naming the file and line. */
static int read_metrics(const char *dir, struct run_curves *rc)
{
  char path[4200];
  snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
  FILE *in = fopen(path, "r");
  if (!in) {
    fprintf(stderr, "zotune plot: %s: cannot open (is %s a run directory?)\n", path, dir);
    return 1;
  }
  char *line = NULL;
  size_t cap = 0;
  long lineno = 0;
  double sm = NAN, lastx = -1;
  int bad = 0;
  while (!bad && getline(&line, &cap, in) >= 0) {
    lineno++;
    json_t *o = json_loads(line, 0, NULL);
    json_t *st = json_object_get(o, "step"), *l = json_object_get(o, "loss");
    json_t *e = json_object_get(o, "eval_loss");
    if (!o || !json_is_integer(st)) {
      fprintf(stderr, "zotune plot: %s:%ld: not a metrics line\n", path, lineno);
      bad = 1;
    } else {
      double x = (double)json_integer_value(st);
      if (json_is_number(l) && x > lastx) { /* a resumed run may repeat steps */
        double v = json_number_value(l);
        sm = isfinite(sm) ? 0.95 * sm + 0.05 * v : v;
        bad |= push(&rc->tr, x, sm) != 0;
        lastx = x;
      }
      if (json_is_number(e))
        bad |= push(&rc->ev, x, json_number_value(e)) != 0;
    }
    json_decref(o);
  }
  free(line);
  fclose(in);
  if (!bad && rc->tr.n == 0 && rc->ev.n == 0) {
    fprintf(stderr, "zotune plot: %s: no loss values to plot\n", path);
    bad = 1;
  }
  return bad;
}

static void xml_text(FILE *f, const char *s)
{
  for (const char *p = s; *p; p++)
    fputs(*p == '<' ? "&lt;" : *p == '>' ? "&gt;" : *p == '&' ? "&amp;" : (char[]){*p, 0}, f);
}

static const char *base_name(const char *dir)
{
  size_t n = strlen(dir);
  while (n > 1 && dir[n - 1] == '/')
    n--;
  const char *b = dir;
  for (size_t i = 0; i + 1 < n; i++)
    if (dir[i] == '/')
      b = dir + i + 1;
  return b;
}

int cmd_plot(int argc, char **argv)
{
  const char *c = "plot", *dirs[MAX_RUNS], *out = NULL, *title = NULL;
  int nruns = 0;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--help") == 0) {
      fputs(plot_help, stdout);
      return 0;
    } else if (strcmp(argv[i], "--run") == 0 && i + 1 < argc) {
      if (nruns == MAX_RUNS)
        return cli_usage_error(c, "at most %d runs in one plot", MAX_RUNS);
      dirs[nruns++] = argv[++i];
    } else if (strcmp(argv[i], "--title") == 0 && i + 1 < argc) {
      title = argv[++i];
    } else if (strcmp(argv[i], "-o") == 0 && i + 1 < argc) {
      out = argv[++i];
    } else {
      return cli_usage_error(c, "unexpected argument '%s'", argv[i]);
    }
  }
  if (!nruns || !out)
    return cli_usage_error(c, "--run and -o are required");
  struct run_curves rc[MAX_RUNS];
  memset(rc, 0, sizeof rc);
  int bad = 0;
  for (int r = 0; r < nruns && !bad; r++)
    bad = read_metrics(dirs[r], &rc[r]);
  /* What is drawn: one run, both curves; several, one curve per run. */
  const struct series *curve[MAX_RUNS + 1];
  int ncurves = 0;
  if (nruns == 1) {
    curve[ncurves++] = &rc[0].tr;
    curve[ncurves++] = &rc[0].ev;
  } else {
    for (int r = 0; r < nruns; r++)
      curve[ncurves++] = rc[r].ev.n ? &rc[r].ev : &rc[r].tr;
  }
  FILE *f = bad ? NULL : fopen(out, "w");
  if (!bad && !f) {
    fprintf(stderr, "zotune plot: %s: cannot write\n", out);
    bad = 2;
  }
  if (f) {
    static const char *const palette[MAX_RUNS] = {
        "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
        "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#000000", "#aec7e8"};
    double x0 = 0, x1 = 1, y0 = INFINITY, y1 = -INFINITY;
    for (int k = 0; k < ncurves; k++)
      for (size_t i = 0; i < curve[k]->n; i++) {
        x1 = fmax(x1, curve[k]->x[i]);
        y0 = fmin(y0, curve[k]->y[i]);
        y1 = fmax(y1, curve[k]->y[i]);
      }
    double pad = (y1 - y0) * 0.05 + 1e-9;
    y0 -= pad;
    y1 += pad;
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"800\" height=\"460\" "
               "font-family=\"sans-serif\" font-size=\"12\">\n"
               "<rect width=\"800\" height=\"460\" fill=\"white\"/>\n"
               "<text x=\"400\" y=\"22\" text-anchor=\"middle\" font-size=\"14\">");
    xml_text(f, title ? title : nruns == 1 ? dirs[0] : "held-out loss");
    fprintf(f, "</text>\n");
    double ts = tick_step(y1 - y0, 6);
    for (double v = ceil(y0 / ts) * ts; v <= y1; v += ts) {
      double py = 400 - (v - y0) / (y1 - y0) * 360;
      fprintf(f, "<line x1=\"70\" x2=\"760\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>"
                 "<text x=\"64\" y=\"%.1f\" text-anchor=\"end\">%g</text>\n",
              py, py, py + 4, v);
    }
    double xs = tick_step(x1 - x0, 8);
    for (double v = 0; v <= x1; v += xs) {
      double px = 70 + (v - x0) / (x1 - x0) * 690;
      fprintf(f, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"400\" y2=\"405\" stroke=\"black\"/>"
                 "<text x=\"%.1f\" y=\"420\" text-anchor=\"middle\">%g</text>\n",
              px, px, px, v);
    }
    fprintf(f, "<rect x=\"70\" y=\"40\" width=\"690\" height=\"360\" fill=\"none\" stroke=\"black\"/>\n"
               "<text x=\"415\" y=\"445\" text-anchor=\"middle\">step</text>\n"
               "<text x=\"18\" y=\"220\" text-anchor=\"middle\" transform=\"rotate(-90 18 220)\">"
               "loss (nats/token)</text>\n");
    int held_out[MAX_RUNS + 1];
    for (int k = 0; k < ncurves; k++) {
      held_out[k] = nruns == 1 ? k == 1 : curve[k] == &rc[k].ev;
      polyline(f, curve[k], x0, x1, y0, y1, palette[k], held_out[k] ? 2.5 : 1.5);
      if (held_out[k])
        for (size_t i = 0; i < curve[k]->n; i++)
          fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n",
                  70 + (curve[k]->x[i] - x0) / (x1 - x0) * 690,
                  400 - (curve[k]->y[i] - y0) / (y1 - y0) * 360, palette[k]);
    }
    /* the legend, on a white box over the curves */
    fprintf(f, "<rect x=\"550\" y=\"46\" width=\"204\" height=\"%d\" fill=\"white\" "
               "fill-opacity=\"0.85\" stroke=\"#ccc\"/>\n",
            18 * ncurves + 6);
    for (int k = 0; k < ncurves; k++) {
      double ly = 58 + 18 * k;
      fprintf(f, "<line x1=\"560\" x2=\"590\" y1=\"%.0f\" y2=\"%.0f\" stroke=\"%s\" stroke-width=\"2\"/>"
                 "<text x=\"596\" y=\"%.0f\">",
              ly, ly, palette[k], ly + 4);
      if (nruns == 1)
        fputs(k == 0 ? "training (smoothed)" : "held-out", f);
      else {
        xml_text(f, base_name(dirs[k]));
        if (!held_out[k])
          fputs(" (training)", f);
      }
      fputs("</text>\n", f);
    }
    fputs("</svg>\n", f);
    if (fclose(f) != 0) {
      fprintf(stderr, "zotune plot: %s: write failed\n", out);
      bad = 2;
    }
  }
  for (int r = 0; r < nruns; r++) {
    free(rc[r].tr.x);
    free(rc[r].tr.y);
    free(rc[r].ev.x);
    free(rc[r].ev.y);
  }
  return bad == 0 ? 0 : bad == 2 ? EXIT_INTERNAL : EXIT_USER;
}
