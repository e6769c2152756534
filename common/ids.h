/* Sizes that the config and the shared segment both hold. */
#ifndef LLMR_IDS_H
#define LLMR_IDS_H

#define LLMR_ID_MAX 64 /* deployment id and model group name, with NUL */

#endif
