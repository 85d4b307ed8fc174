// Text corpora (perplexity texts, calibration texts) split into documents.
#pragma once
#include <string>
#include <vector>

namespace nibble {

// Splits a corpus into documents: on "<|endoftext|>" when the text has it,
// otherwise on every single '\n' that has no '\n' right before or after it
// (blank lines separate paragraphs inside a document). CRLF becomes LF; each
// document is stripped and empty ones are dropped.
std::vector<std::string> split_documents(const std::string& corpus);

}  // namespace nibble
