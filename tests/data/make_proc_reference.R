# Regenerates the pROC reference numbers used by tests/test_stats.py (run from tests/data/):
#   Rscript make_proc_reference.R
# Writes aSAH.csv (pROC's example data), proc_cases.csv (inputs) and proc_results.csv (pROC's outputs).
# Every ROC uses levels = c(0, 1) and direction = "<": controls (0, benign) score lower than cases (1).
suppressMessages(library(pROC))
data(aSAH)
asah <- data.frame(outcome = as.integer(aSAH$outcome == "Poor"), s100b = aSAH$s100b, ndka = aSAH$ndka,
                   wfns = as.integer(as.character(aSAH$wfns)))
write.csv(asah, "aSAH.csv", row.names = FALSE)

set.seed(20240917)
cases <- list()
add_paired <- function(name, y, a, b) cases[[length(cases) + 1]] <<- list(name = name, kind = "paired", y1 = y, a = a, y2 = NULL, b = b)
add_unpaired <- function(name, y1, a, y2, b) cases[[length(cases) + 1]] <<- list(name = name, kind = "unpaired", y1 = y1, a = a, y2 = y2, b = b)

add_paired("asah_ndka_s100b", asah$outcome, asah$ndka, asah$s100b)
add_paired("asah_wfns_s100b", asah$outcome, asah$wfns, asah$s100b)
add_paired("tiny_2v2_ties", c(0, 0, 1, 1), c(0.1, 0.5, 0.5, 0.9), c(0.2, 0.2, 0.2, 0.8))
add_paired("tiny_3v2", c(1, 0, 1, 0, 1), c(0.7, 0.3, 0.3, 0.6, 0.9), c(0.4, 0.5, 0.8, 0.1, 0.2))
y <- rbinom(60, 1, 0.4); y[1:2] <- c(0, 1)
add_paired("integer_ties_60", y, y + sample(0:3, 60, TRUE), sample(0:2, 60, TRUE) + y)
y <- rbinom(200, 1, 0.35); y[1:2] <- c(0, 1)
a <- rnorm(200, y * 1.2); add_paired("continuous_200", y, a, 0.6 * a + rnorm(200, y * 0.5, 0.8))
y <- rep(c(0, 1), c(15, 10))
add_paired("perfect_vs_noisy", y, c(runif(15, 0, 0.4), runif(10, 0.6, 1)), runif(25) + 0.3 * y)
y <- rbinom(40, 1, 0.5); y[1:2] <- c(0, 1)
add_paired("inverted_vs_constant", y, -y + rnorm(40, 0, 0.7), rep(0.5, 40))
y <- rbinom(80, 1, 0.3); y[1:2] <- c(0, 1); a <- round(rnorm(80, y), 1)
add_paired("identical", y, a, a)
add_unpaired("asah_split_s100b_ndka", asah$outcome[1:60], asah$s100b[1:60], asah$outcome[61:113], asah$ndka[61:113])
y1 <- rbinom(30, 1, 0.5); y1[1:2] <- c(0, 1); y2 <- rbinom(90, 1, 0.3); y2[1:2] <- c(0, 1)
add_unpaired("unpaired_ties", y1, sample(1:5, 30, TRUE) + y1, y2, round(rnorm(90, 0.8 * y2), 1))
add_unpaired("unpaired_tiny", c(0, 1, 1), c(0.2, 0.4, 0.2), c(0, 0, 1, 1), c(0.3, 0.1, 0.9, 0.3))
# zero-variance cases (no random draws, so the cases above keep their numbers): both AUCs 1, and 0 vs 1
add_unpaired("unpaired_both_perfect", c(0, 0, 1, 1), c(0.1, 0.2, 0.8, 0.9), c(0, 0, 0, 1, 1), c(1, 2, 3, 4, 5))
add_unpaired("unpaired_inverted_vs_perfect", c(0, 0, 1, 1), c(0.9, 0.8, 0.2, 0.1), c(0, 0, 1, 1, 1), c(0.1, 0.2, 0.5, 0.7, 0.6))
add_paired("paired_both_perfect", c(0, 0, 1, 1, 1), c(0.1, 0.2, 0.8, 0.9, 0.7), c(3, 1, 5, 9, 7))

inputs <- do.call(rbind, lapply(cases, function(cs) {
  if (cs$kind == "paired") {
    data.frame(case = cs$name, kind = cs$kind, sample = 1L, y = cs$y1, score_a = cs$a, score_b = cs$b)
  } else {
    rbind(data.frame(case = cs$name, kind = cs$kind, sample = 1L, y = cs$y1, score_a = cs$a, score_b = NA),
          data.frame(case = cs$name, kind = cs$kind, sample = 2L, y = cs$y2, score_a = NA, score_b = cs$b))
  }
}))
num <- function(x) ifelse(is.na(x), "", sprintf("%.17g", x))
inputs$score_a <- num(inputs$score_a); inputs$score_b <- num(inputs$score_b)
write.csv(inputs, "proc_cases.csv", row.names = FALSE, quote = FALSE)

mkroc <- function(y, s) roc(y, s, levels = c(0, 1), direction = "<", quiet = TRUE)
rows <- list()
put <- function(case, quantity, value) rows[[length(rows) + 1]] <<- data.frame(case = case, quantity = quantity, value = sprintf("%.17g", value))
for (cs in cases) {
  ra <- mkroc(cs$y1, cs$a)
  rb <- mkroc(if (cs$kind == "paired") cs$y1 else cs$y2, cs$b)
  for (side in c("a", "b")) {
    r <- if (side == "a") ra else rb
    ci <- suppressWarnings(ci.auc(r, method = "delong"))
    put(cs$name, paste0("auc_", side), as.numeric(auc(r)))
    put(cs$name, paste0("var_", side), suppressWarnings(var(r, method = "delong")))
    put(cs$name, paste0("ci_low_", side), ci[1])
    put(cs$name, paste0("ci_high_", side), ci[3])
  }
  if (cs$kind == "paired") {
    t <- suppressWarnings(roc.test(ra, rb, method = "delong", paired = TRUE))
    put(cs$name, "z", t$statistic); put(cs$name, "p", t$p.value)
    put(cs$name, "diff_ci_low", t$conf.int[1]); put(cs$name, "diff_ci_high", t$conf.int[2])
  } else {
    t <- suppressWarnings(roc.test(ra, rb, method = "delong", paired = FALSE))
    put(cs$name, "d", t$statistic); put(cs$name, "df", t$parameter); put(cs$name, "p", t$p.value)
  }
}
results <- do.call(rbind, rows)
write.csv(results, "proc_results.csv", row.names = FALSE, quote = FALSE)
cat("pROC", as.character(packageVersion("pROC")), "on", R.version.string, "\n", file = "proc_version.txt")
